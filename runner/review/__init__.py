"""`postwright preview`: what a change's emails look like and when they go out, for review
(docs/preview.md). Pure parts (samples, timing in words, the index) and the I/O around them
(rendering in the render pool, the output folder, the Chromium screenshot)."""
