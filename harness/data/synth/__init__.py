"""The embedded synthetic dataset: faces drawn from landmarks, written in AffectNet's format.

Each face is drawn from its 68 iBUG landmarks: an identity (face shape, eye size, lip
thickness, skin, hair) is deformed by an expression (a small set of facial "action" controls
such as brow raise or mouth-corner pull), posed (roll, yaw, pitch, scale, position) and drawn
with PIL over a cluttered background; lighting, occluders, blur, sensor noise and JPEG
compression then degrade it. Class counts copy AffectNet's imbalance; validation is balanced.

Every image is seeded from (seed, split, index), so the worker pool's order never changes a
byte, and the CSVs are written last, so a folder whose CSVs exist is complete.
"""
