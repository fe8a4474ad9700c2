-- Storage: publish() maintains only the extension's own indexes of a
-- segment.  An index, trigger, rule, row security or CHECK constraint that
-- only a superuser can add now would be ignored, so publishing refuses.
SET ROLE eb_team_a;
SELECT eventbus.create_topic('pub.t');
SELECT * FROM eventbus.publish('pub.t', '{"n": 0}', idempotency_key => 'k0');
RESET ROLE;
CREATE FUNCTION public.eb_pub_trg() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RETURN NEW;
END
$$;
CREATE INDEX pub_extra ON eventbus_data."pub.t$1" ((value->>'n'));
SET ROLE eb_team_a;
SELECT * FROM eventbus.publish('pub.t', '{"n": 1}');
RESET ROLE;
DROP INDEX eventbus_data.pub_extra;
CREATE TRIGGER pub_trg BEFORE INSERT ON eventbus_data."pub.t$1"
  FOR EACH ROW EXECUTE FUNCTION public.eb_pub_trg();
SET ROLE eb_team_a;
SELECT * FROM eventbus.publish_batch('pub.t', ARRAY['{"n": 1}', '{"n": 2}']::jsonb[]);
RESET ROLE;
DROP TRIGGER pub_trg ON eventbus_data."pub.t$1";
ALTER TABLE eventbus_data."pub.t$1" ADD CONSTRAINT pub_check CHECK (position < 1000);
SET ROLE eb_team_a;
SELECT * FROM eventbus.publish('pub.t', '{"n": 1}');
RESET ROLE;
ALTER TABLE eventbus_data."pub.t$1" DROP CONSTRAINT pub_check;
CREATE RULE pub_rule AS ON UPDATE TO eventbus_data."pub.t$1" DO INSTEAD NOTHING;
SET ROLE eb_team_a;
SELECT * FROM eventbus.publish('pub.t', '{"n": 1}');
RESET ROLE;
DROP RULE pub_rule ON eventbus_data."pub.t$1";
ALTER TABLE eventbus_data."pub.t$1" ENABLE ROW LEVEL SECURITY;
SET ROLE eb_team_a;
SELECT * FROM eventbus.publish('pub.t', '{"n": 1}');
RESET ROLE;
ALTER TABLE eventbus_data."pub.t$1" DISABLE ROW LEVEL SECURITY;
-- back to normal: both own indexes are maintained
SET ROLE eb_team_a;
SELECT * FROM eventbus.publish('pub.t', '{"n": 1}', idempotency_key => 'k1');
SELECT * FROM eventbus.publish('pub.t', '{"n": 1}', idempotency_key => 'k1');
SELECT * FROM eventbus.publish('pub.t', '{"n": 0}', idempotency_key => 'k0');
SELECT position, value FROM eventbus.read('pub.t', 0);
RESET ROLE;
SET enable_seqscan = off;
SELECT position FROM eventbus_data."pub.t$1" WHERE idempotency_key = 'k1';
SELECT position FROM eventbus_data."pub.t$1" WHERE partition = 0 AND position = 7;
RESET enable_seqscan;
SET ROLE eb_team_a;
SELECT eventbus.drop_topic('pub.t');
RESET ROLE;
DROP FUNCTION public.eb_pub_trg();
