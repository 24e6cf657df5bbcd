"""The ``pixelperfect`` command.

Each subcommand is a thin click wrapper around one library function. Subcommands are imported
lazily, so ``pixelperfect analyze`` never pays for importing Gradio or TensorFlow.
"""

from __future__ import annotations

import importlib

import click

from . import __version__

# name -> "module:attribute" of a click.Command
LAZY_COMMANDS = {
    "analyze": "pixelperfect_daemon.commands.analyze:analyze",
    "train": "pixelperfect_daemon.commands.train:train",
    "eval": "pixelperfect_daemon.commands.evaluate:evaluate",
    "distortions": "pixelperfect_daemon.commands.distortions:distortions",
    "daemon": "pixelperfect_daemon.commands.daemon:daemon_command",
    "scan": "pixelperfect_daemon.commands.scan:scan_command",
    "learn": "pixelperfect_daemon.commands.learn:learn_command",
    "ui": "review_ui.cli:ui_command",
    "hash-password": "review_ui.cli:hash_password_command",
    "demo": "pixelperfect_daemon.commands.demo:demo",
    "index": "pixelperfect_daemon.commands.index:index_group",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return sorted(LAZY_COMMANDS)

    def get_command(self, ctx, name):
        target = LAZY_COMMANDS.get(name)
        if target is None:
            return None
        module_name, attribute = target.split(":")
        return getattr(importlib.import_module(module_name), attribute)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pixelperfect")
def main():
    """PixelPerfect: find the blurred, noisy, badly exposed and broken photos in your ingest folders.

    \b
    Examples:
      pixelperfect analyze --json photos/          # one JSON line per image
      pixelperfect daemon --config config.toml     # watch folders, tag XMP, index
      pixelperfect ui --config config.toml         # review flagged images in a browser
      pixelperfect demo                            # all of it on a demo folder
    """
