"""PixelPerfect: image-quality analysis for photographers and DAM admins.

The package is the engine and the daemon; ``review_ui`` is the reviewer's app.
"""

__version__ = "0.1.0"
