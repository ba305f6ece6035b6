"""Small modal forms: a few labelled text fields, or one choice from a list. Keyboard only: tab between
fields, enter submits, escape cancels."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, OptionList, Static

MODAL_CSS = """
{name} {{ align: center middle; }}
{name} > Vertical {{
    width: 80%; max-width: 90; height: auto; max-height: 90%;
    border: thick $primary; background: $surface; padding: 0 1;
}}
{name} .form-title {{ text-style: bold; }}
{name} .form-keys {{ color: $text-muted; }}
{name} Input {{ margin-bottom: 0; }}
"""


@dataclass(frozen=True)
class Field:
    name: str
    label: str
    value: str = ""
    placeholder: str = ""


class FormScreen(ModalScreen[dict[str, str] | None]):
    """Returns {field name: text} on enter, None on escape."""

    DEFAULT_CSS = MODAL_CSS.format(name="FormScreen")
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, fields: Sequence[Field], submit: str = "Save") -> None:
        super().__init__()
        self.title_text = title
        self.fields = list(fields)
        self.submit = submit

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.title_text, classes="form-title", markup=False)
            for field in self.fields:
                yield Label(field.label)
                entry = Input(field.value, placeholder=field.placeholder, id=f"field-{field.name}")
                entry.cursor_blink = False
                yield entry
            yield Static(f"enter: {self.submit}   tab: next field   escape: cancel", classes="form-keys")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss({field.name: self.query_one(f"#field-{field.name}", Input).value for field in self.fields})

    def action_cancel(self) -> None:
        self.dismiss(None)


class PickScreen(ModalScreen[str | None]):
    """One of `choices` (enter), or None (escape)."""

    DEFAULT_CSS = MODAL_CSS.format(name="PickScreen") + "PickScreen OptionList { height: auto; max-height: 16; }"
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, choices: Sequence[str]) -> None:
        super().__init__()
        self.title_text = title
        self.choices = list(choices)

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.title_text, classes="form-title", markup=False)
            yield OptionList(*self.choices)
            yield Static("enter: choose   escape: cancel", classes="form-keys")

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(self.choices[event.option_index])

    def action_cancel(self) -> None:
        self.dismiss(None)
