"""`ChatInput`: the multi-line message line, with history, completion and edit-last.

Enter sends; Shift+Enter, Ctrl+J and Alt+Enter insert a new line; pasting inserts long
text as it is. Up and Down walk the input history when the cursor is on the first or last
line; Up on an empty line asks the app to edit your last message. Tab completes commands
and nicks (again: the next candidate). Ctrl+W and Ctrl+U come from `TextArea`.
It never calls the node: it posts `Submitted` and `EditLast` for the app.
"""

from __future__ import annotations

from typing import ClassVar, Final

from textual import events
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import TextArea

from ._commands import complete

__all__ = ["ChatInput"]

MAX_HISTORY: Final = 200
NEWLINE_KEYS: Final = frozenset({"shift+enter", "ctrl+j", "alt+enter", "newline"})


class ChatInput(TextArea):
    """Where people type messages and commands."""

    DEFAULT_CSS = """
    ChatInput { height: auto; min-height: 1; max-height: 10; border: none; padding: 0 1; }
    ChatInput:focus { border: none; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("pageup", "app.scroll_timeline(-1)", "scroll up", show=False),
        Binding("pagedown", "app.scroll_timeline(1)", "scroll down", show=False),
    ]

    class Submitted(Message):
        """Enter was pressed: the line to send or run."""

        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    class EditLast(Message):
        """Up on an empty line: edit the last message of yours."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(
            "",
            id=id,
            soft_wrap=True,
            show_line_numbers=False,
            tab_behavior="focus",
            compact=True,
            highlight_cursor_line=False,
        )
        self.input_history: list[str] = []
        self._history_index: int | None = None  # None: not walking the history
        self._draft = ""
        self.nicks: list[str] = []
        self._completions: list[str] = []
        self._completion_index = 0
        self._completed: str | None = None  # what the last Tab left in the input

    def set_text(self, text: str) -> None:
        """Replace the input and put the cursor at its end."""
        self.load_text(text)
        last_row = self.document.line_count - 1
        self.move_cursor((last_row, len(self.document.get_line(last_row))))

    def remember(self, text: str) -> None:
        if text and (not self.input_history or self.input_history[-1] != text):
            self.input_history.append(text)
            del self.input_history[:-MAX_HISTORY]
        self._history_index = None

    async def _on_key(self, event: events.Key) -> None:
        key = event.key
        if key != "tab":
            self._completed = None
        if key == "enter":
            event.stop()
            event.prevent_default()
            text = self.text
            if text.strip():
                self.remember(text)
                self.load_text("")
                self.post_message(self.Submitted(text))
            return
        if key in NEWLINE_KEYS:
            event.stop()
            event.prevent_default()
            self.insert("\n")
            return
        if key == "tab":
            event.stop()
            event.prevent_default()
            self._complete()
            return
        if key == "up" and self.cursor_location[0] == 0:
            event.stop()
            event.prevent_default()
            if not self.text and self._history_index is None:
                self.post_message(self.EditLast())
            else:
                self._walk(-1)
            return
        if key == "down" and self.cursor_location[0] == self.document.line_count - 1:
            event.stop()
            event.prevent_default()
            self._walk(1)
            return
        await super()._on_key(event)

    def _walk(self, step: int) -> None:
        if not self.input_history:
            return
        if self._history_index is None:
            if step > 0:
                return
            self._draft = self.text
            index = len(self.input_history) - 1
        else:
            index = self._history_index + step
        if index >= len(self.input_history):
            self._history_index = None
            self.set_text(self._draft)
            return
        self._history_index = max(index, 0)
        self.set_text(self.input_history[self._history_index])

    def _complete(self) -> None:
        text = self.text
        if self._completed is not None and text == self._completed and self._completions:
            self._completion_index = (self._completion_index + 1) % len(self._completions)
        else:
            self._completions = complete(text, self.nicks)
            self._completion_index = 0
            if not self._completions:
                self.app.bell()
                return
        self._completed = self._completions[self._completion_index]
        self.set_text(self._completed)
