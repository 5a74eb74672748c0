// clue-triage review page: one key per decision. Loaded as a file (the page's CSP allows no
// inline script). Without it the page still works: the radio buttons and buttons are plain forms.
(function () {
  "use strict";
  var HEAD_KEYS = { attention: ["1", "2", "3"], area: ["q", "w", "e", "r"] };
  var submitted = false;

  function byId(id) { return document.getElementById(id); }

  function chosen(form, head) {
    var input = form.querySelector('input[name="' + head + '"]:checked');
    return input ? input.value : "";
  }

  // hand-over follows the chosen labels; a reason is required to change a confident label
  function update(form) {
    var routing = JSON.parse(byId("routing").textContent);
    var att = chosen(form, "attention"), area = chosen(form, "area");
    var handover = byId("handover");
    if (handover && routing[att + "|" + area]) { handover.textContent = routing[att + "|" + area]; }
    var changed = att !== form.dataset.modelAttention || area !== form.dataset.modelArea;
    byId("reason").required = form.dataset.confident === "1" && changed;
  }

  function submit(form) {
    if (!form || submitted) { return; }
    if (form.requestSubmit) { form.requestSubmit(); } else { form.submit(); }
  }

  document.addEventListener("submit", function () { submitted = true; });
  document.addEventListener("invalid", function () { submitted = false; }, true);

  document.addEventListener("DOMContentLoaded", function () {
    var form = byId("decide");
    if (form) {
      form.addEventListener("change", function () { update(form); });
      update(form);
    }
  });

  document.addEventListener("keydown", function (ev) {
    if (ev.ctrlKey || ev.metaKey || ev.altKey || ev.isComposing) { return; }
    var target = ev.target;
    var tag = target && target.tagName;
    if (tag === "INPUT" && target.type === "text" || tag === "TEXTAREA" || tag === "SELECT") {
      if (ev.key === "Escape") { target.blur(); }
      return; // typing a reason: keys are text
    }
    if (tag === "BUTTON" || tag === "A") {
      if (ev.key === "Enter" || ev.key === " ") { return; } // the focused control's own action
    }
    var form = byId("decide");
    var key = ev.key.length === 1 ? ev.key.toLowerCase() : ev.key;
    if (form) {
      for (var head in HEAD_KEYS) {
        var i = HEAD_KEYS[head].indexOf(key);
        if (i >= 0) {
          var inputs = form.querySelectorAll('input[name="' + head + '"]');
          if (inputs[i]) { inputs[i].checked = true; update(form); }
          ev.preventDefault();
          return;
        }
      }
      if (key === "Enter") { ev.preventDefault(); submit(form); return; }
      if (key === "/") { ev.preventDefault(); byId("reason").focus(); return; }
      if (key === "s") { ev.preventDefault(); submit(byId("skip")); return; }
    }
    if (key === "u" && byId("undo")) { ev.preventDefault(); submit(byId("undo")); }
  });
})();
