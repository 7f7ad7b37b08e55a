"""Chat messages for one problem, from the prompt config."""

from __future__ import annotations

from factory.config import PromptConfig


def build_messages(cfg: PromptConfig, problem: str) -> list[dict[str, str]]:
    messages = []
    if cfg.system:
        messages.append({"role": "system", "content": cfg.system})
    # str.replace, not format(): a problem's own braces (LaTeX!) must never be interpreted.
    user = cfg.template.replace("{problem}", "\x00").format().replace("\x00", problem)
    messages.append({"role": "user", "content": user})
    return messages
