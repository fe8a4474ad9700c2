-- Storage: an index of a segment's primary-key shape, (partition,
-- position), but with an operator class only a superuser can add: its
-- comparison function would run as every publisher, so publishing
-- refuses the segment, also in a session that published to it before.
SET ROLE eb_team_a;
SELECT eventbus.create_topic('pub.opc');
SELECT partition, position FROM eventbus.publish('pub.opc', '{"n": 0}');
RESET ROLE;
CREATE FUNCTION public.eb_int4_cmp(int4, int4) RETURNS int LANGUAGE sql IMMUTABLE
  AS 'SELECT btint4cmp($1, $2)';
CREATE OPERATOR CLASS public.eb_int4_ops FOR TYPE int4 USING btree AS
  OPERATOR 1 <, OPERATOR 2 <=, OPERATOR 3 =, OPERATOR 4 >=, OPERATOR 5 >,
  FUNCTION 1 public.eb_int4_cmp(int4, int4);
CREATE UNIQUE INDEX pub_opc_custom ON eventbus_data."pub.opc$1"
  (partition public.eb_int4_ops, position);
SET ROLE eb_team_a;
SELECT partition, position FROM eventbus.publish('pub.opc', '{"n": 1}');
RESET ROLE;
DROP INDEX eventbus_data.pub_opc_custom;
SET ROLE eb_team_a;
SELECT count(*) FROM eventbus.publish('pub.opc', '{"n": 2}');
SELECT eventbus.drop_topic('pub.opc');
RESET ROLE;
DROP OPERATOR FAMILY public.eb_int4_ops USING btree;
DROP FUNCTION public.eb_int4_cmp(int4, int4);
