"""Time algorithms beyond the step-by-step scan.

``linear.py`` solves diagonal linear recurrences ``h_t = a_t ⊙ h_{t-1} + b_t``
(the min cells, and the linear solves of the Newton methods) sequentially, with
an associative scan, or chunk by chunk.
"""
