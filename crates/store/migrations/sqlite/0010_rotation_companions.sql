-- Bulwark schema, version 10, SQLite dialect: a root rotation proposed
-- with its companions (RFD 0002, "Proposals").
--
-- Keep this file in step with ../postgres/0010_rotation_companions.sql.
--
-- After a rotation the stored policy and freeze statement must verify
-- under the new root, so a root proposal may carry the current policy
-- re-signed as the next version and the freeze statement re-signed as the
-- next sequence. Each holds every signature gathered so far; they are
-- published with the root, in one transaction. NULL: no such companion.
ALTER TABLE trust_proposals ADD COLUMN policy_envelope BLOB;
ALTER TABLE trust_proposals ADD COLUMN freeze_envelope BLOB;
