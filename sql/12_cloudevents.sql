-- relay_topic(..., format => 'cloudevents'): its arguments.  (The relay
-- does not serve this database: messages on the wire are tested in
-- test/t/089_relay_cloudevents.pl.)

SELECT pg_get_function_arguments('eventbus.relay_topic'::regproc);
SELECT eventbus.create_topic('ce_args', 1);

\set VERBOSITY default
SELECT eventbus.relay_topic('ce_args', format => 'xml');
SELECT eventbus.relay_topic('ce_args', format => NULL);
SELECT eventbus.relay_topic('ce_args', format => 'plain', cloudevents_source => '/a');
SELECT eventbus.relay_topic('ce_args', cloudevents_source => '/a');
SELECT eventbus.relay_topic('ce_args', format => 'cloudevents', cloudevents_source => 'has space');
SELECT eventbus.relay_topic('ce_args', format => 'cloudevents', cloudevents_source => '');
SELECT eventbus.relay_topic('ce_args', format => 'cloudevents', cloudevents_source => '/caf' || chr(233));
SELECT eventbus.relay_topic('ce_args', format => 'cloudevents', cloudevents_source => repeat('a', 1025));
\set VERBOSITY terse
-- valid arguments get as far as the relay's own checks
SELECT eventbus.relay_topic('ce_args', format => 'cloudevents', cloudevents_source => 'https://example.com/x');
SELECT eventbus.relay_topic('ce_args', format => 'json');
SELECT eventbus.relay_topic('ce_args', 'kafka-ce', 'now', 'cloudevents');
-- start_at: 'now', 'earliest', 'last_acknowledged' or a timestamp
\set VERBOSITY default
SELECT eventbus.relay_topic('ce_args', start_at => 'soon');
SELECT eventbus.relay_topic('ce_args', start_at => 'infinity');
SELECT eventbus.relay_topic('ce_args', start_at => '2026-02-30 10:00');
SELECT eventbus.relay_topic('ce_args', start_at => NULL);
\set VERBOSITY terse
-- valid ones get as far as the relay's own checks
SELECT eventbus.relay_topic('ce_args', start_at => 'earliest');
SELECT eventbus.relay_topic('ce_args', start_at => 'last_acknowledged');
SELECT eventbus.relay_topic('ce_args', start_at => '2026-01-01 00:00+00');

SELECT eventbus.drop_topic('ce_args');
