-- 0009_model_record.sql: what a run's model is and what its maps explain (issue 14), written when the
-- run starts (and again when it resumes). NULL for runs recorded before this migration.
--
-- model_description: one line: the kind of model and its file, its input (axis order, channels, size),
--   its classes and where their names came from, and how its outputs are taken.
-- explains: the scores the maps explain: 'logits' (the model ends without a softmax), 'logits before
--   the removed final softmax `NODE`' (an ONNX graph whose final Softmax / LogSoftmax node was taken
--   off), or 'the module''s outputs (taken as logits)' (TorchScript; a module whose outputs look like
--   probabilities is refused at load).
ALTER TABLE runs ADD COLUMN model_description TEXT;
ALTER TABLE runs ADD COLUMN explains TEXT;
