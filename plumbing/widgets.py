"""The interactive LoRA calculator's widgets (ipywidgets), for helpers.lora_calculator (notebook 03)."""

from __future__ import annotations

from collections.abc import Callable


def calculator(models: list[str], model_id: str, ranks: list[int], rank: int, targets: tuple[str, ...],
               describe: Callable[[str, int, list[str]], str], tags_of: Callable[[str], list[str]]) -> None:
    """Show a model menu, a rank menu and a target list, and ``describe(model, rank, targets)`` under them."""
    import ipywidgets as widgets
    from IPython.display import display

    model_box = widgets.Dropdown(options=models, value=model_id, description="model")
    rank_box = widgets.Dropdown(options=ranks, value=rank, description="rank r")
    targets_box = widgets.SelectMultiple(options=tags_of(model_id), value=tuple(targets), description="targets")
    answer = widgets.Label()

    def update(_change=None) -> None:
        chosen = list(targets_box.value)
        answer.value = describe(model_box.value, rank_box.value, chosen) if chosen else "choose at least one target"

    def model_changed(_change) -> None:
        tags = tags_of(model_box.value)
        targets_box.options = tags
        targets_box.value = tuple(tags)  # start from all linear layers of the new model
        update()

    model_box.observe(model_changed, "value")
    rank_box.observe(update, "value")
    targets_box.observe(update, "value")
    update()
    display(widgets.VBox([model_box, rank_box, targets_box, answer]))
