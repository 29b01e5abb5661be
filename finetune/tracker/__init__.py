"""Training the tracker half of a ``sam3_video`` checkpoint (prompt encoder, mask decoder, memory) on
synthetic shapes, with transformers' own tracker modules: :mod:`.train` (the run), :mod:`.steps` (the
differentiable refine and unrolled-clip passes), :mod:`.clips` (moving-shape clips with ground truth),
:mod:`.evaluate` (held-out refine IoU and tracking J through the project's engines)."""
