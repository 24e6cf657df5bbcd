"""``pixelperfect distortions``: write the contact sheet of every synthetic distortion."""

from __future__ import annotations

from pathlib import Path

import click

DEFAULT_OUT = Path("models/distortions.png")
# 35 rows x 4 cells of photo content: 112 px cells keep the PNG under ~3 MB.
DEFAULT_TILE = 112


@click.command("distortions")
@click.option(
    "--image",
    "image_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Photo to distort (default: scikit-image's bundled 'astronaut' sample).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_OUT,
    show_default=True,
    help="PNG file to write.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of every distortion.")
@click.option(
    "--tile",
    type=click.IntRange(64, 1024),
    default=DEFAULT_TILE,
    show_default=True,
    help="Longest side of each cell in pixels; the default keeps the sheet under ~3 MB.",
)
def distortions(image_path: Path | None, out: Path, seed: int, tile: int):
    """Write a contact sheet: every distortion sub-type at levels 1, 3 and 5, beside the original.

    \b
    Examples:
      pixelperfect distortions                          # models/distortions.png
      pixelperfect distortions --image cat.jpg --out /tmp/sheet.png --seed 3
    """
    from ..training.contact_sheet import (
        ContactSheetError,
        make_contact_sheet,
        read_rgb,
        sample_image,
        save_png,
    )

    try:
        image = sample_image() if image_path is None else read_rgb(image_path)
        if image_path is not None and out.resolve() == image_path.resolve():
            raise ContactSheetError(f"refusing to overwrite the input image {image_path}")
        sheet = make_contact_sheet(image, tile=tile, seed=seed)
        save_png(sheet, out)
    except ContactSheetError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"wrote {out} ({sheet.width}x{sheet.height})")
