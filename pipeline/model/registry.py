"""Model registry: every version kept, hashed, and accountable.

Layout under the home's ``models/``::

    models/v1/model.npz        the fitted arrays and their JSON description (owner-only)
    models/v1/manifest.json    format version, sha256 of the artifact, data hashes, metrics …
    models/registry.json       champion now, and the history of which version was champion when

A new version is written in a hidden temporary folder and renamed into place, so a
triage that runs meanwhile never sees half a model; the champion changes by an atomic
replace of ``registry.json``. :meth:`Registry.load` checks the format version and the
sha256 of the artifact against the manifest (and the registry's own record of it)
before reading it. The artifact holds only numeric arrays and a JSON description, read
with ``allow_pickle=False``: however a home is tampered with (even ``registry.json``
edited to trust a planted file), loading a model cannot run code.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, ModelIntegrityError, NoModelError
from ..fsutil import sha256_file, write_text_atomic
from ..paths import STOPWORDS_PATH, USERDICT_PATH
from ..store.store import now
from .model import TwoHeadModel

FORMAT_VERSION = 2
ARTIFACT = "model.npz"
_SPEC = "spec.json"
MANIFEST = "manifest.json"
REGISTRY = "registry.json"
_VERSION_RE = re.compile(r"^v(\d+)$")


def _input_drift(manifest: dict[str, Any]) -> list[str]:
    """Segmentation inputs that changed since the model was trained (tokens may differ)."""
    data = manifest.get("data", {})
    out = []
    for key, path in (("userdict_sha256", USERDICT_PATH), ("stopwords_sha256", STOPWORDS_PATH)):
        if data.get(key) and path.exists() and sha256_file(path) != data[key]:
            out.append(f"{path.name} changed since model {manifest.get('version')} was trained; retrain to use it")
    return out


def _checked_state(state: Any, path: Path) -> dict[str, Any]:
    """The registry's state when its fields have the types this code relies on."""
    problem = None
    if not isinstance(state, dict):
        problem = "it is not a JSON object"
    elif state.get("champion") is not None and not isinstance(state.get("champion"), str):
        problem = "'champion' is not a version name"
    elif not isinstance(state.get("artifacts", {}), dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in state.get("artifacts", {}).items()):
        problem = "'artifacts' is not a map of version to sha256"
    elif not isinstance(state.get("events", []), list) or not all(
            isinstance(e, dict) and isinstance(e.get("action"), str) for e in state.get("events", [])):
        problem = "'events' is not a list of events"
    if problem:
        raise ModelIntegrityError(f"{path}: registry file is damaged ({problem}); restore it from a backup")
    state.setdefault("artifacts", {})
    state.setdefault("events", [])
    return dict(state)


@dataclass
class LoadedModel:
    model: TwoHeadModel
    manifest: dict[str, Any]
    warnings: list[str] = field(default_factory=list)

    @property
    def version(self) -> str:
        return str(self.manifest["version"])


class Registry:
    """The model versions in one home."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    # -- state ------------------------------------------------------------------------
    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialise every change of the registry (train, retrain, promote, rollback)."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _state(self) -> dict[str, Any]:
        path = self.root / REGISTRY
        if not path.exists():
            if self.versions():
                raise ModelIntegrityError(
                    f"{path} is missing but model versions exist; restore it from a backup "
                    "(it records which artifacts are trusted and which version is champion)"
                )
            return {"champion": None, "artifacts": {}, "events": []}
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ModelIntegrityError(f"{path}: registry file is not valid JSON ({exc.msg})") from None
        except (UnicodeDecodeError, RecursionError, ValueError):
            raise ModelIntegrityError(f"{path}: registry file is not readable JSON text") from None
        return _checked_state(state, path)

    def _write_state(self, state: dict[str, Any]) -> None:
        write_text_atomic(self.root / REGISTRY, json.dumps(state, ensure_ascii=False, indent=2))

    def versions(self) -> list[str]:
        """Version names in creation order."""
        if not self.root.is_dir():
            return []
        found = [(int(m.group(1)), p.name) for p in self.root.iterdir() if (m := _VERSION_RE.match(p.name))]
        return [name for _, name in sorted(found)]

    def champion(self) -> str | None:
        return self._state().get("champion")

    def history(self) -> list[dict[str, Any]]:
        return list(self._state().get("events", []))

    @staticmethod
    def _champion_stack(events: list[dict[str, Any]]) -> list[str]:
        """Champions in order, as promotions push and rollbacks pop them."""
        stack: list[str] = []
        for event in events:
            if event["action"] == "promote":
                stack.append(event["version"])
            elif event["action"] == "rollback" and stack:
                stack.pop()
        return stack

    def status(self, version: str) -> str:
        state = self._state()
        if state.get("champion") == version:
            return "champion"
        if any(e.get("version") == version and e["action"] in ("promote", "rollback") for e in state["events"]):
            return "retired"
        return "candidate"

    def _check_name(self, version: str) -> None:
        if not _VERSION_RE.fullmatch(version):
            raise InputError(f"{version!r} is not a model version (they are named v1, v2, …)")

    def manifest(self, version: str) -> dict[str, Any]:
        self._check_name(version)
        path = self.root / version / MANIFEST
        if not path.is_file():
            raise InputError(f"no model version {version!r} in {self.root} (known: {', '.join(self.versions()) or 'none'})")
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise ModelIntegrityError(f"model {version}: {path} is not valid JSON; refusing to use it") from None
        if not isinstance(manifest, dict):
            raise ModelIntegrityError(f"model {version}: {path} is not a manifest (a JSON object); refusing to use it")
        return manifest

    # -- writing ----------------------------------------------------------------------
    def save(self, model: TwoHeadModel, manifest: dict[str, Any]) -> dict[str, Any]:
        """Write a new version; return its manifest (with version, artifact hash, created)."""
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".incoming-", dir=self.root))
        try:
            artifact = tmp / ARTIFACT
            fd = os.open(artifact, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                spec, arrays = model.to_arrays()
                encoded = np.frombuffer(json.dumps(spec, ensure_ascii=False).encode("utf-8"), dtype=np.uint8)
                np.savez_compressed(handle, **{_SPEC: encoded}, **arrays)  # type: ignore[arg-type]
                handle.flush()
                os.fsync(handle.fileno())
            manifest = {
                **manifest,
                "format_version": FORMAT_VERSION,
                "created": now(),
                "artifact": {"file": ARTIFACT, "sha256": sha256_file(artifact), "bytes": artifact.stat().st_size},
            }
            with self._locked():
                state = self._state()
                # a version registered whose folder never arrived (killed between the two
                # steps) keeps its number: the next version never reuses it
                known = [*self.versions(), *(v for v in state.get("artifacts", {}) if _VERSION_RE.fullmatch(v))]
                number = max([int(v[1:]) for v in known] + [0]) + 1
                version = f"v{number}"
                manifest["version"] = version
                write_text_atomic(tmp / MANIFEST, json.dumps(manifest, ensure_ascii=False, indent=2))
                # trusted before it is visible: a reader never finds a folder the registry does not know
                state.setdefault("artifacts", {})[version] = manifest["artifact"]["sha256"]
                state.setdefault("events", []).append({"time": now(), "action": "register", "version": version})
                self._write_state(state)
                os.rename(tmp, self.root / version)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return manifest

    def promote(self, version: str, *, by: str = "", reason: str = "", forced: bool = False,
                expected_champion: str | None | object = ...) -> None:
        """Make ``version`` the champion and record who, when and why.

        With ``expected_champion``, refuse if the champion changed meanwhile (a retrain that
        compared against one champion must not replace another)."""
        self.verify(version)
        with self._locked():
            state = self._state()
            current = state.get("champion")
            if current == version:
                raise InputError(f"{version} is already the champion")
            if expected_champion is not ... and current != expected_champion:
                raise InputError(f"the champion changed to {current} meanwhile; {version} stays a candidate")
            state.setdefault("events", []).append(
                {"time": now(), "action": "promote", "version": version, "previous": current,
                 "by": by, "reason": reason, "forced": forced}
            )
            state["champion"] = version
            self._write_state(state)

    def rollback(self, *, by: str = "", reason: str = "") -> str:
        """Bring back the champion before the current one; return its version.

        Champions form a stack: a promotion pushes, a rollback pops, so repeated rollbacks
        walk back through the whole history."""
        with self._locked():
            state = self._state()
            stack = self._champion_stack(state.get("events", []))
            if len(stack) < 2:
                raise InputError("no earlier champion to roll back to")
            current, previous = stack[-1], stack[-2]
            self.verify(previous)
            state["events"].append(
                {"time": now(), "action": "rollback", "version": previous, "previous": current,
                 "by": by, "reason": reason or f"rollback from {current}", "forced": False}
            )
            state["champion"] = previous
            self._write_state(state)
        return previous

    # -- loading ----------------------------------------------------------------------
    def verify(self, version: str) -> dict[str, Any]:
        """Check a version without unpickling it: a known name, a format this code reads, and
        an artifact whose sha256 matches both its manifest and the registry's own record."""
        manifest = self.manifest(version)
        if manifest.get("format_version") != FORMAT_VERSION:
            raise ModelIntegrityError(
                f"model {version}: format version {manifest.get('format_version')!r}, this clue-triage reads {FORMAT_VERSION}"
            )
        recorded = self._state().get("artifacts", {}).get(version)
        if recorded is None:
            raise ModelIntegrityError(f"model {version}: not registered in {REGISTRY}; refusing to load it")
        artifact = self.root / version / ARTIFACT
        if not artifact.is_file():
            raise ModelIntegrityError(f"model {version}: artifact {artifact} is missing")
        actual = sha256_file(artifact)
        if actual != manifest.get("artifact", {}).get("sha256") or actual != recorded:
            raise ModelIntegrityError(
                f"model {version}: sha256 of {artifact.name} does not match its manifest; refusing to load it"
            )
        return manifest

    def load(self, version: str | None = None, predict_only: bool = False) -> LoadedModel:
        """Verify then load a version (default: the champion); with ``predict_only``, without
        the members' own weights (:meth:`TwoHeadModel.release_members`: what triage needs)."""
        version = version or self.champion()
        if not version:
            raise NoModelError(
                f"no model in {self.root}; train one first: clue-triage train"
                + (f" (or promote one of: {', '.join(self.versions())})" if self.versions() else "")
            )
        manifest = self.verify(version)
        try:
            with np.load(self.root / version / ARTIFACT, allow_pickle=False) as stored:
                arrays = {name: stored[name] for name in stored.files}
            spec = json.loads(arrays.pop(_SPEC).tobytes().decode("utf-8"))
            model = TwoHeadModel.from_arrays(spec, arrays)
            del arrays  # the members' weights are then held by the model alone, and freed with release_members
            if predict_only:
                model.release_members()
        except (ValueError, KeyError, TypeError, OSError, json.JSONDecodeError) as exc:
            raise ModelIntegrityError(f"model {version}: artifact is not a clue-triage model ({exc.__class__.__name__})") from None
        return LoadedModel(model, manifest, _input_drift(manifest))

    # -- views ------------------------------------------------------------------------
    def summaries(self) -> list[dict[str, Any]]:
        """One row per version for ``models list``."""
        rows = []
        for version in self.versions():
            m = self.manifest(version)
            dev = m.get("metrics", {}).get("out_of_register", {})
            sizes = m.get("data", {}).get("sizes", {})
            rows.append(
                {
                    "version": version,
                    "status": self.status(version),
                    "created": m.get("created", ""),
                    "parent": m.get("parent"),
                    "final_fit": sizes.get("final_fit", 0),
                    "reviewed": sizes.get("reviewed", 0),
                    "overrides_used": m.get("data", {}).get("overrides_used", 0),
                    "attention_macro_f1": f"{dev.get('attention_macro_f1', 0):.3f}",
                    "area_macro_f1": f"{dev.get('area_macro_f1', 0):.3f}",
                    "further_recall": f"{dev.get('further_recall', 0):.3f}",
                }
            )
        return rows

    def model_card(self, version: str) -> str:
        """A short, human-readable card: data, scores per head and class, known weaknesses."""
        m = self.manifest(version)
        sizes = m.get("data", {}).get("sizes", {})
        lines = [
            f"model {version} ({self.status(version)}), created {m.get('created')}, parent {m.get('parent') or '-'}",
            f"artifact sha256 {m['artifact']['sha256']} ({m['artifact']['bytes']:,} bytes), format {m.get('format_version')}",
            f"segmenter {m.get('segmenter')}; libraries: "
            + ", ".join(f"{k} {v}" for k, v in m.get("libraries", {}).items())
            + "".join(f"; liblinear tolerance {t}" for t in [m.get("solver", {}).get("linear_svc_tol")] if t),
            f"data: {sizes.get('examples', 0)} examples in {sizes.get('groups', 0)} registers, "
            f"reviewed clues {sizes.get('reviewed', 0)}, "
            f"overrides used {m.get('data', {}).get('overrides_used', 0)}; examples sha256 {m.get('data', {}).get('examples_sha256', '')[:16]}…",
            "training data: " + training_words(sizes),
            f"thresholds: further ≥ {m.get('thresholds', {}).get('further')}, needs review below "
            + ", ".join(f"{h} {t:.3f}" for h, t in m.get("thresholds", {}).get("needs_review", {}).items())
            + f", familiarity below {m.get('thresholds', {}).get('familiarity_floor')}; chosen on "
            + str(m.get("thresholds", {}).get("chosen_on", "dev")),
            "",
            "scores:",
        ]
        for where, scores in m.get("metrics", {}).items():
            lines.append(f"  {where}: " + ", ".join(f"{k} {v:.3f}" for k, v in scores.items() if isinstance(v, int | float)))
        per_class = m.get("per_class", {})
        if per_class:
            lines += ["", "per class (out of register: each register scored by a model that never saw it):"]
            weak = []
            for key, c in per_class.items():
                lines.append(f"  {key:<24} precision {c['precision']:.3f} recall {c['recall']:.3f} F1 {c['f1']:.3f} (n={c['support']})")
                if c["f1"] < 0.85:
                    weak.append(key)
            lines += ["", "known weaknesses: " + (", ".join(f"{k} (F1 < 0.85 out of register)" for k in weak)
                                                  or "none below F1 0.85 out of register")]
        registers = m.get("registers", {})
        if registers:
            lines += ["", "per register (out of register; flagged = needs_review share; unflagged = accuracy of the rest):"]
            for name, r in registers.items():
                lines.append(
                    f"  {name:<16} n={r['n']:<5} attention F1 {r['attention_macro_f1']:.3f}  area F1 {r['area_macro_f1']:.3f}  "
                    f"flagged {r['flagged']:.2f}  unflagged attention {r['attention_unflagged_accuracy']:.3f} "
                    f"area {r['area_unflagged_accuracy']:.3f}  further recall {r['further_recall']:.3f}")
        lines += [
            "limits: trained on a written corpus of one bureau's kind of clues; texts from other sectors, very long "
            "letters (> 2,000 characters are truncated) and mixed-language texts are less reliable.",
        ]
        if m.get("gate"):
            lines += ["", *gate_lines(m["gate"])]
        return "\n".join(lines)


_METRIC_NAMES = {"attention_macro_f1": "attention macro-F1", "area_macro_f1": "area macro-F1",
                 "further_recall": "further recall"}


def _count(n: int, what: str) -> str:
    return f"{n:,} {what}"


def training_words(sizes: Mapping[str, Any]) -> str:
    """What a model was trained on, in words (from ``manifest["data"]["sizes"]``)."""
    corpus, reviewed = int(sizes.get("corpus", 0)), int(sizes.get("reviewed", 0))
    text = f"{_count(int(sizes.get('examples', corpus + reviewed)), 'examples')}: {_count(corpus, 'corpus clues')}"
    replaced = int(sizes.get("corpus_replaced_by_review", 0))
    if replaced:
        text += f" ({replaced:,} more replaced by a reviewer's label for the same text)"
    text += f" and {_count(reviewed, 'reviewed clues')}"
    groups = int(sizes.get("groups", 0))
    if groups:
        text += f", in {groups} groups (registers" + (", and the reviewed clues as one" if reviewed else "") + ")"
    left = [(int(sizes.get("reviewed_skipped_conflicting_copies", 0)), "copies of one text labelled differently"),
            (int(sizes.get("reviewed_skipped_corpus_test_text", 0)), "copies of a corpus test clue (kept for testing)"),
            (int(sizes.get("reviewed_skipped_duplicate_copies", 0)), "further copies of a text already counted")]
    left = [(n, why) for n, why in left if n]
    if left:
        text += "; reviewed clues left out: " + ", ".join(f"{n:,} {why}" for n, why in left)
    if "reviewed_new_to_champion" in sizes:
        text += f"; {int(sizes['reviewed_new_to_champion']):,} of the reviewed clues were new to the champion"
    if sizes.get("calibration") and int(sizes["calibration"]) < int(sizes.get("examples", 0)):
        text += (f"; out-of-fold scores (calibration, thresholds, the gate) on {int(sizes['calibration']):,} of them "
                 f"(every corpus clue and {int(sizes['calibration']) - corpus:,} reviewed ones)")
    return text


def gate_rows(comparisons: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    """One row per data set and metric: data, metric, n, champion, challenger, difference,
    95 % interval, verdict (from ``manifest["gate"]["comparisons"]``)."""
    rows = []
    for c in comparisons:
        for key, (diff, lo, hi) in c.get("intervals", {}).items():
            rows.append([str(c.get("data", "")), _METRIC_NAMES.get(key, key), f"{c.get('counts', {}).get(key, c.get('n', 0)):,}",
                         f"{c.get('champion', {}).get(key, float('nan')):.3f}",
                         f"{c.get('challenger', {}).get(key, float('nan')):.3f}",
                         f"{diff:+.3f}", f"{lo:+.3f} … {hi:+.3f}", str(c.get("verdicts", {}).get(key, ""))])
    return rows


GATE_HEADER = ["data", "metric", "n", "champion", "challenger", "difference", "95% interval", "verdict"]


def gate_lines(gate: Mapping[str, Any]) -> list[str]:
    """The promotion gate of a manifest as text: the decision, what it rested on, the table."""
    decision = "passed" if gate.get("passed") else ("FAILED, promoted by force" if gate.get("forced") else "FAILED")
    against = f" against {gate['champion']}" if gate.get("champion") else ""
    lines = [f"promotion gate{against}: {decision} (tolerance {gate.get('max_drop', 0):.3f}; {gate.get('rule', '')})"]
    if gate.get("evidence"):
        lines.append(f"  {gate['evidence']}")
    comparisons = gate.get("comparisons")
    if comparisons is None:  # written before the gate kept its comparisons: differences only
        comparisons = [{"data": data, "intervals": intervals} for data, intervals in gate.get("intervals", {}).items()]
    rows = gate_rows(comparisons)
    if rows:
        widths = [max(len(r[i]) for r in [GATE_HEADER, *rows]) for i in range(len(GATE_HEADER))]
        for row in [GATE_HEADER, *rows]:
            lines.append("  " + "  ".join(v.ljust(w) if i in (0, 1, 7) else v.rjust(w)
                                          for i, (v, w) in enumerate(zip(row, widths, strict=True))).rstrip())
    lines += [f"  ! {note}" for note in gate.get("notes", [])]
    lines += [f"  ✗ {failure}" for failure in gate.get("failures", [])]
    return lines
