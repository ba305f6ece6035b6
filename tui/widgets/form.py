"""Small modal forms: a few labelled text fields, or one choice from a list. Keyboard only: tab between
fields, enter submits, escape cancels. A form that saves through the engine stays open on bad input, with each
problem beside the field it is about and everything typed kept."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
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
{name} .form-error {{ color: $error; padding: 0 1; }}
{name} .form-fields {{ height: auto; max-height: 70vh; }}
{name} .form-fields Input {{ background: $boost; }}
{name} .form-fields Input:focus {{ background: $primary 30%; }}
"""


@dataclass(frozen=True)
class Field:
    name: str
    label: str
    value: str = ""
    placeholder: str = ""
    mentions: tuple[str, ...] = ()  # words of an engine problem that point at this field, e.g. "--vm-dir"


class FormScreen(ModalScreen[Any]):
    """Returns {field name: text} on enter, None on escape. Given `save`, enter calls `save(values, form)`
    instead, and the form stays open until the caller ends it: `close(result)` once saved, or `refuse(problems)`
    to show them beside their fields for the admin to correct."""

    DEFAULT_CSS = MODAL_CSS.format(name="FormScreen")
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(
        self,
        title: str,
        fields: Sequence[Field],
        submit: str = "Save",
        save: Callable[[dict[str, str], FormScreen], object] | None = None,
    ) -> None:
        super().__init__()
        self.title_text = title
        self.fields = list(fields)
        self.submit = submit
        self.save = save
        self.saving = False
        self.keys_text = f"enter: {submit}   tab: next field   escape: cancel"

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.title_text, classes="form-title", markup=False)
            # The fields scroll (to the focused one) between the title and the keys, which stay in view at 80x24.
            with VerticalScroll(classes="form-fields", can_focus=False):
                for field in self.fields:
                    yield Label(field.label)
                    entry = Input(field.value, placeholder=field.placeholder, id=f"field-{field.name}", compact=True)
                    entry.cursor_blink = False
                    yield entry
                    yield Static("", id=f"error-{field.name}", classes="form-error hidden", markup=False)
            yield Static(self.keys_text, id="form-keys", classes="form-keys", markup=False)

    def values(self) -> dict[str, str]:
        return {field.name: self.query_one(f"#field-{field.name}", Input).value for field in self.fields}

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if self.save is None:
            self.dismiss(self.values())
        elif not self.saving:  # a second enter while the engine works on the first does nothing
            self.saving = True
            self.query_one("#form-keys", Static).update(f"{self.submit}: working…   escape: close")
            self.save(self.values(), self)

    def field_of(self, problem: str) -> Field:
        """The field a problem is about: the first whose mentions it names, else the first field."""
        text = problem.lower()
        for field in self.fields:
            if any(word.lower() in text for word in field.mentions):
                return field
        return self.fields[0]

    def refuse(self, problems: Sequence[str]) -> None:
        """Show each problem under its field and put the cursor in the first of them; the values stay."""
        self.saving = False
        self.query_one("#form-keys", Static).update(self.keys_text)
        by_field: dict[str, list[str]] = {}
        for problem in problems:
            by_field.setdefault(self.field_of(problem).name, []).append(problem)
        for field in self.fields:
            error = self.query_one(f"#error-{field.name}", Static)
            error.update("\n".join(by_field.get(field.name, [])))
            error.set_class(field.name not in by_field, "hidden")
        first = next(field for field in self.fields if field.name in by_field)
        self.query_one(f"#field-{first.name}", Input).focus()

    def errors(self) -> dict[str, str]:
        """The problems on view, by field name."""
        shown = {}
        for field in self.fields:
            error = self.query_one(f"#error-{field.name}", Static)
            if not error.has_class("hidden"):
                shown[field.name] = str(error.render())
        return shown

    def close(self, result: Any = None) -> None:
        if self in self.app.screen_stack:  # the admin may have closed it while the engine worked
            self.dismiss(result)

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
