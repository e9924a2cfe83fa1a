"""Time algorithms beyond the step-by-step scan.

``linear.py`` solves diagonal linear recurrences ``h_t = a_t ⊙ h_{t-1} + b_t``
(the min cells, and the linear solves of the Newton methods) sequentially, with
an associative scan, or chunk by chunk; ``linear_blocks.py`` the same with
``k × k`` block-diagonal or dense coefficients (the LSTM's ``(h_i, c_i)`` blocks,
DEER's full Jacobians). ``newton.py`` evaluates a nonlinear recurrence by
Newton's method over the whole trajectory (DEER, quasi-DEER) with exact adjoint
gradients; ``jacobians.py`` holds the built-in cells' closed-form Jacobians.
"""
