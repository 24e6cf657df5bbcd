"""The research scripts' tests are slow by nature: they train or run the models over photo sets."""

import pytest


def pytest_collection_modifyitems(items):
    for item in items:
        if "experiments" in item.path.parts:
            item.add_marker(pytest.mark.slow)
