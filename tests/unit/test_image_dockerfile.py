"""The workspace Dockerfile, read as text: the CA enters only as a secret, and the rules hold."""

from __future__ import annotations

import re

from tre.image.build import BUILD_CA_ID, CONTENT_HASH_LABEL, default_context_dir

DOCKERFILE = (default_context_dir() / "Dockerfile").read_text(encoding="utf-8")
INSTRUCTIONS = [
    " ".join(part.strip() for part in block.split("\\\n"))
    for block in re.split(r"\n(?=[A-Z]+ )", re.sub(r"(?m)^\s*#.*\n", "", DOCKERFILE))
    if block.strip()
]
"""Each instruction on one line, comments dropped."""


def test_the_ca_is_never_copied_or_passed_as_an_argument():
    for instruction in INSTRUCTIONS:
        keyword = instruction.split()[0]
        if keyword in ("COPY", "ADD"):
            assert ".crt" not in instruction and "cert" not in instruction.lower()
        if keyword in ("ARG", "ENV"):
            assert "CERT" not in instruction.upper() and "CA_BUNDLE" not in instruction.upper()


def test_every_use_of_the_ca_is_a_secret_mount():
    for instruction in INSTRUCTIONS:
        if "/run/secrets/" in instruction:
            assert instruction.startswith(f"RUN --mount=type=secret,id={BUILD_CA_ID}")


def test_no_syntax_directive_that_would_need_a_registry():
    assert not re.search(r"(?m)^#\s*syntax=", DOCKERFILE)


def test_final_stage_runs_tini_as_uid_1000_with_the_singleuser_server():
    final = DOCKERFILE[DOCKERFILE.rindex("\nFROM ") :]
    assert "\nUSER 1000:100\n" in final
    assert '\nENTRYPOINT ["/usr/bin/tini", "-g", "--"]\n' in final
    assert '\nCMD ["jupyterhub-singleuser"]\n' in final
    assert f'{CONTENT_HASH_LABEL}="${{TRE_CONTENT_HASH}}"' in final
    assert "PYTHONNOUSERSITE=1" in final


def test_no_sudo_and_no_apt_lists_left():
    assert not any("sudo" in instruction for instruction in INSTRUCTIONS)
    assert "rm -rf /var/lib/apt/lists/*" in DOCKERFILE
