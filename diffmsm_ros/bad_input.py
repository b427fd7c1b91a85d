"""The error raised for an input message that cannot be used."""


class BadInput(ValueError):
    """
    An input that cannot be used: the reason (text) and a short code for counting.

    Codes: ``missing_field``, ``length_mismatch``, ``non_finite``, ``duplicate_names``,
    ``missing_names``, ``layout``, ``channel_count``, ``out_of_range``, ``future_stamp``,
    ``repeated_stamp``, ``no_clock``.
    """

    def __init__(self, reason, code):
        super().__init__(reason)
        self.code = code
