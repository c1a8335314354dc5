"""Progress bars for long CLI work, fed by ``progress(stage, fraction)`` callbacks."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

# soft_wrap: messages stay on one line in logs and pipes, whatever the terminal width.
console = Console(stderr=True, soft_wrap=True)


@contextmanager
def progress_bar(title: str) -> Iterator[Callable[[str, float], None]]:
    """A bar whose label follows the stage and whose fill follows the stage's fraction."""
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as bar:
        task = bar.add_task(title, total=1.0)

        def update(stage: str, fraction: float) -> None:
            done = max(0.0, min(1.0, fraction))
            bar.update(task, description=f"{title}: {stage}", completed=done)

        yield update
        bar.update(task, description=f"{title}: done", completed=1.0)
