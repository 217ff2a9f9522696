"""User-facing errors: one line that names the file/problem and what to do.

The CLI turns any ``InputError`` into ``corrflow: error: <message>`` on stderr and exit
code 2; the widgets show it as a napari notification.
"""


class InputError(ValueError):
    """Bad input (file, mask, points, weights, device) - message is shown to the user as is."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))   # always one line
