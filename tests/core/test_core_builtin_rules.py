"""The architecture's rules, checked over every installed component (built-ins included).

Options models forbid unknown keys and describe every field (``config reference`` prints them, and
a typo gets a "did you mean"), and importing them stays light, so ``medgr2 config validate``
never imports torch or an SDK.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent("""
    import json, sys, warnings
    warnings.simplefilter("ignore")
    from medgr2.plugins import load_registry
    heavy = ("torch", "transformers", "trl", "accelerate", "peft", "datasets", "openai", "nltk", "google.genai")
    problems, checked = [], 0
    for e in load_registry():
        if e.config is None:
            continue
        model = e.options_model()
        checked += 1
        where = f"{e.kind} {e.name!r} ({e.plugin}: {model.__module__}.{model.__qualname__})"
        if model.model_config.get("extra") != "forbid":
            problems.append(f"{where}: options model lacks extra='forbid'")
        problems += [f"{where}: field {n!r} has no description"
                     for n, f in model.model_fields.items() if not (f.description or "").strip()]
    loaded = sorted(m for m in sys.modules if m in heavy or m.startswith(tuple(h + "." for h in heavy)))
    print(json.dumps({"problems": problems, "checked": checked, "heavy": loaded}))
""")


def test_every_options_model_forbids_extras_documents_fields_and_is_light():
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDGR2_")}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, env=env, check=False, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["checked"] > 10
    assert result["problems"] == []
    assert result["heavy"] == [], "an options model's module imports a heavy library at module level"
