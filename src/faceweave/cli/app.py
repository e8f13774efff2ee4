"""`faceweave app`: the browser interface."""
from __future__ import annotations

import click

from .base import main


@main.command("app")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; 0.0.0.0 opens the app to your whole network (no login!).")
@click.option("--port", default=7860, show_default=True, type=click.IntRange(1, 65535), help="TCP port.")
@click.option("--model", default=None,
              help="Checkpoint folder or bundled name replacing its backend's default  [default: diffusion-64-real]")
@click.option("--max-concurrency", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Requests that run at once (they share one model and the CPU cores).")
@click.option("--max-queue", default=16, show_default=True, type=click.IntRange(1, 10_000),
              help="Requests that may wait; more are refused at once with 'queue is full'.")
def app_cmd(host, port, model, max_concurrency, max_queue) -> None:
    """Start the web app: paint a mask, type a prompt, get faces; edit photos.

    Needs the app extra (pip install 'faceweave[app]'). Serves on 127.0.0.1 only unless
    --host says otherwise; uploads are limited to 10 MB and 40 megapixels. docs/app.md
    explains every control. Stop it with Ctrl+C.

    \b
    Example:
      faceweave app                      # then open http://127.0.0.1:7860
      faceweave app --port 8080 --max-queue 32
    """
    from ..app import launch

    launch(host=host, port=port, model=model, max_concurrency=max_concurrency, max_queue=max_queue, block=True)
