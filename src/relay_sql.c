/*-------------------------------------------------------------------------
 *
 * relay_sql.c
 *	  SQL functions of the Kafka relay: relay_topic(), stop_relay(),
 *	  outbox(), relay_stats(), relay_backlog(), allow_relay(),
 *	  disallow_relay().  The checks the output plugin shares with them (the
 *	  relay key, the allow-list) are in relay_catalog.c.
 *
 * outbox() writes a transactional logical decoding message (prefix
 * "pg_eventbus.outbox"): it exists in WAL only, is decoded at commit in
 * commit order, and is never stored in a table, so nothing needs cleaning
 * up.  Any role can write a logical message with that prefix
 * (pg_logical_emit_message), so outbox messages are authenticated: they
 * carry an HMAC-SHA256 keyed with the database's relay key
 * (eventbus.relay_key, created at CREATE EXTENSION, readable by no one but
 * superusers and the extension owner; outbox() reads it directly from the
 * heap, the output plugin with the historic snapshot).  Its format, read by
 * relay_output.c (integers in the server's byte order):
 *
 *	uint8 format (2)
 *	32 bytes              HMAC-SHA256 of the format byte and everything below
 *	Oid                   the role that called outbox()
 *	int32 length, bytes   Kafka topic
 *	int32 length, bytes   key (length -1: none)
 *	16 bytes              event id (UUID v7)
 *	int64                 created_at (TimestampTz)
 *	int32 length, bytes   headers: a jsonb datum with its 4-byte header
 *						  (length -1: none)
 *	int32 length, bytes   value as JSON text
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "catalog/namespace.h"
#include "commands/dbcommands.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "replication/message.h"
#include "replication/slot.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/inval.h"
#include "utils/syscache.h"
#include "utils/acl.h"
#include "catalog/pg_class.h"
#include "utils/memutils.h"
#include "utils/pg_lsn.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"
#include "utils/uuid.h"

#include "settings.h"
#include "compat.h"
#include "catalog.h"
#include "position.h"
#include "publish.h"
#include "read.h"
#include "relay.h"
#include "worker.h"
#include "shmem.h"
#include "topic.h"
#include "trace.h"
#include "util.h"

PG_FUNCTION_INFO_V1(eb_relay_topic);
PG_FUNCTION_INFO_V1(eb_relay_topic_v2);
PG_FUNCTION_INFO_V1(eb_stop_relay);
PG_FUNCTION_INFO_V1(eb_outbox);
PG_FUNCTION_INFO_V1(eb_relay_stats);
PG_FUNCTION_INFO_V1(eb_relay_backlog);
PG_FUNCTION_INFO_V1(eb_allow_relay);
PG_FUNCTION_INFO_V1(eb_disallow_relay);

/*
 * Outbox messages written by the current transaction, per subtransaction
 * nesting level (in TopTransactionContext), so that a rolled-back savepoint
 * takes its messages out of the count as logical decoding drops them.
 */
typedef struct EbOutboxLevel
{
	int			level;
	uint64		count;
} EbOutboxLevel;

static List *outbox_levels = NIL;

static void
eb_outbox_count(int level, uint64 count)
{
	EbOutboxLevel *last = outbox_levels ? llast(outbox_levels) : NULL;

	if (last == NULL || last->level != level)
	{
		MemoryContext old = MemoryContextSwitchTo(TopTransactionContext);

		last = palloc(sizeof(EbOutboxLevel));
		last->level = level;
		last->count = 0;
		outbox_levels = lappend(outbox_levels, last);
		MemoryContextSwitchTo(old);
	}
	last->count += count;
}

static char *
eb_kafka_topic_arg(FunctionCallInfo fcinfo, int argno)
{
	char	   *name;

	eb_arg_not_null(fcinfo, argno, "kafka_topic");
	name = text_to_cstring(PG_GETARG_TEXT_PP(argno));
	if (!eb_kafka_topic_name_valid(name))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_NAME),
				 errmsg("invalid Kafka topic name \"%s\"", name),
				 errdetail("A Kafka topic name has 1 to %d characters, each a letter A-Z or a-z, a digit, '.', '_' or '-', and is neither \".\" nor \"..\".",
						   EB_KAFKA_TOPIC_MAX)));
	return name;
}

/*
 * A subtransaction at nesting level "level" ended: its messages move to the
 * parent level on commit and are forgotten on abort.
 */
void
eb_outbox_subxact_end(int level, bool commit)
{
	uint64		moved = 0;

	while (outbox_levels != NIL &&
		   ((EbOutboxLevel *) llast(outbox_levels))->level >= level)
	{
		EbOutboxLevel *last = llast(outbox_levels);

		moved += last->count;
		outbox_levels = list_delete_last(outbox_levels);
		pfree(last);
	}
	if (commit && moved > 0)
		eb_outbox_count(level - 1, moved);
}

/*
 * The end of a transaction: on commit, counts its outbox messages for the
 * status.  Returns how many it wrote (a prepared transaction's are counted
 * at COMMIT PREPARED, see pg_eventbus.c).
 */
uint64
eb_outbox_xact_end(bool commit)
{
	ListCell   *lc;
	uint64		total = 0;

	foreach(lc, outbox_levels)
		total += ((EbOutboxLevel *) lfirst(lc))->count;
	/* the cells live in TopTransactionContext, which goes away now */
	outbox_levels = NIL;
	if (commit)
		eb_outbox_count_committed(total);
	return total;
}

/* Outbox messages committed: the relay status counts them as backlog. */
void
eb_outbox_count_committed(uint64 count)
{
	EbRelayShared *r = count > 0 ? eb_relay_state(MyDatabaseId) : NULL;

	if (r != NULL)
		pg_atomic_fetch_add_u64(&r->outbox_committed, count);
}

/*
 * Refuses relay_topic() and outbox() where what they record could never
 * reach Kafka: wal_level below what logical decoding needs (logical;
 * replica from 19, where core turns logical decoding on for the slot), or a database the relay does not
 * serve.  With lost_without_slot (outbox(): its messages live only in
 * WAL), also while the relay has no usable slot in this database.  The one
 * place that decides which databases the relay serves.
 */
static void
eb_relay_check_served(const char *func, bool lost_without_slot)
{
	char	   *dbname = get_database_name(MyDatabaseId);
	char		slot[NAMEDATALEN];
	ReplicationSlot *s;
	bool		usable = false;

	if (wal_level < EB_LOGICAL_WAL_LEVEL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the Kafka relay needs wal_level = %s", EB_LOGICAL_WAL_LEVEL_NAME),
				 errdetail("wal_level is \"%s\": nothing %s records now could reach Kafka.",
						   GetConfigOption("wal_level", false, false), func),
				 errhint("Set wal_level = %s and restart the server.", EB_LOGICAL_WAL_LEVEL_NAME)));
	if (!eb_database_served(dbname))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the Kafka relay does not serve database \"%s\"", dbname ? dbname : "?"),
				 errdetail("The relay serves only the databases named by eventbus.database (\"%s\"): nothing %s records here would reach Kafka.",
						   eb_database, func),
				 errhint("Call %s in a database named there, or add \"%s\" to eventbus.database (or make it empty: every database) and reload the configuration.",
						 func, dbname ? dbname : "?")));
	if (!lost_without_slot)
		return;

	eb_relay_slot_name(MyDatabaseId, slot);
	LWLockAcquire(ReplicationSlotControlLock, LW_SHARED);
	s = SearchNamedReplicationSlot(slot, false);
	if (s != NULL)
	{
		SpinLockAcquire(&s->mutex);
		usable = eb_slot_invalidation_reason(&s->data) == NULL;
		SpinLockRelease(&s->mutex);
	}
	LWLockRelease(ReplicationSlotControlLock);
	if (!usable)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the Kafka relay has not started in database \"%s\"", dbname),
				 errdetail("Outbox messages live only in WAL: without the relay's replication slot \"%s\" this message would be lost.",
						   slot),
				 errhint("Set eventbus.kafka_brokers and reload the configuration, then wait until eventbus.relay_status.state is no longer 'not started'.")));
}

/* The snapshot for reading the allow-list in a function call. */
static Snapshot
eb_relay_call_snapshot(void)
{
	return ActiveSnapshotSet() ? GetActiveSnapshot() : NULL;
}

/* Refuses unless the role may relay into or send to the Kafka topic. */
static void
eb_relay_check_allowed(Oid roleid, const char *kafka_topic, const char *what)
{
	if (eb_relay_allowed(roleid, kafka_topic, eb_relay_call_snapshot()))
		return;
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("role \"%s\" may not %s Kafka topic \"%s\"",
					GetUserNameFromId(roleid, false), what, kafka_topic),
			 errdetail("A superuser decides which Kafka topics each role may use (table eventbus.relay_allowed)."),
			 errhint("A superuser can allow it with SELECT eventbus.allow_relay('%s', '%s').",
					 GetUserNameFromId(roleid, false), kafka_topic)));
}

/*
 * Warns when the Kafka topic's partition count, as far as the relay knows
 * it (eventbus.relay_partitioning), differs from the topic's: events then
 * go to Kafka partitions by key instead of keeping their partition.
 */
static void
eb_relay_check_partitions(EbTopic *topic, const char *kafka_topic)
{
	EbSpi		spi;
	Oid			argtypes[2] = {TEXTOID, INT4OID};
	Datum		values[2];
	int32		kafka_partitions = -1;
	bool		isnull;
	bool		decided = false;

	values[0] = CStringGetTextDatum(kafka_topic);
	values[1] = Int32GetDatum(topic->topic_id);
	eb_spi_begin(&spi, true);
	eb_spi_exec("SELECT kafka_partitions, topic_id = $2 FROM eventbus.relay_partitioning WHERE kafka_topic = $1 ORDER BY topic_id = $2 DESC, decided_at DESC LIMIT 1",
				2, argtypes, values, NULL, true);
	if (SPI_processed == 1)
	{
		kafka_partitions = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		decided = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	}
	eb_spi_end(&spi);
	if (kafka_partitions > 0 && kafka_partitions != topic->partitions)
		ereport(WARNING,
				(errcode(ERRCODE_WARNING),
				 errmsg("Kafka topic \"%s\" has %d partitions, topic \"%s\" has %d",
						kafka_topic, kafka_partitions, topic->name, topic->partitions),
				 errdetail("Events keep their partition number in Kafka only when both have as many partitions; otherwise Kafka's partitioner chooses the partition from the event's key%s.",
						   decided ? "" : " (decided when the relay first sends an event of the topic there)"),
				 errhint("Give the Kafka topic %d partitions before events are relayed, or accept partitioning by key.",
						 topic->partitions)));
}

/* Records the topic's on_error policy (eventbus.relay_policy). */
static void
eb_relay_set_policy(EbTopic *topic, const char *on_error)
{
	EbSpi		spi;
	Oid			argtypes[2] = {INT4OID, TEXTOID};
	Datum		values[2];

	values[0] = Int32GetDatum(topic->topic_id);
	values[1] = CStringGetTextDatum(on_error);
	eb_spi_begin(&spi, true);
	eb_spi_exec("DELETE FROM eventbus.relay_policy WHERE topic_id = $1",
				1, argtypes, values, NULL, false);
	eb_spi_exec("INSERT INTO eventbus.relay_policy (topic_id, on_error) VALUES ($1, $2)",
				2, argtypes, values, NULL, false);
	eb_spi_end(&spi);
}

/*
 * Records the form of the topic's Kafka messages (eventbus.relay_format):
 * "plain" or "cloudevents" with its ce_source (NULL: the default).  Written
 * with the topic's relay_to, so the output plugin sees both from the same
 * transaction on.
 */
static void
eb_relay_set_format(const char *name, const char *format, const char *source)
{
	EbTopic    *topic = eb_topic_get(name, false);
	EbSpi		spi;
	Oid			argtypes[3] = {INT4OID, TEXTOID, TEXTOID};
	Datum		values[3];
	char		nulls[3] = {' ', ' ', ' '};

	values[0] = Int32GetDatum(topic->topic_id);
	values[1] = CStringGetTextDatum(format);
	if (source)
		values[2] = CStringGetTextDatum(source);
	else
		nulls[2] = 'n';
	eb_spi_begin(&spi, true);
	eb_spi_exec("DELETE FROM eventbus.relay_format WHERE topic_id = $1",
				1, argtypes, values, NULL, false);
	eb_spi_exec("INSERT INTO eventbus.relay_format (topic_id, format, cloudevents_source) VALUES ($1, $2, $3)",
				3, argtypes, values, nulls, false);
	eb_spi_end(&spi);
}

/*
 * The format (argument argno) and cloudevents_source (srcno) arguments of
 * relay_topic(), checked.
 */
static void
eb_relay_format_args(FunctionCallInfo fcinfo, int argno, int srcno,
					 const char **format, const char **source)
{
	eb_arg_not_null(fcinfo, argno, "format");
	*format = text_to_cstring(PG_GETARG_TEXT_PP(argno));
	*source = NULL;
	if (strcmp(*format, "json") == 0)
		*format = "plain";
	if (strcmp(*format, "plain") != 0 && strcmp(*format, "cloudevents") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid format \"%s\"", *format),
				 errdetail("format is 'plain' (the event's value, key and headers as they are; also spelled 'json') or 'cloudevents' (the CloudEvents Kafka protocol binding, binary content mode).")));
	if (!PG_ARGISNULL(srcno))
	{
		char	   *s = text_to_cstring(PG_GETARG_TEXT_PP(srcno));
		size_t		len = strlen(s);
		size_t		i;
		bool		ok = len >= 1 && len <= EB_CE_SOURCE_MAX;

		if (strcmp(*format, "cloudevents") != 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("cloudevents_source needs format 'cloudevents'")));
		for (i = 0; ok && i < len; i++)
			ok = s[i] > 0x20 && s[i] < 0x7f;
		if (!ok)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid cloudevents_source \"%s\"",
							pnstrdup(s, pg_mbcliplen(s, len, 100))),
					 errdetail("A CloudEvents source is a URI reference of 1 to %d printable ASCII characters without spaces (non-ASCII characters percent-encoded), for example https://example.com/orders or /billing/orders.",
							   EB_CE_SOURCE_MAX)));
		*source = s;
	}
}

/*
 * Sets or clears (kafka_topic NULL) the topic's relay.  start_at: the
 * argument of relay_topic() (NULL: 'now' of version 0.1.0's SQL objects,
 * or stop_relay()), start and ts parsed from it.  The seam's lock makes
 * transactions publishing to the topic end first and later ones wait for
 * this commit (relay_backfill.c).
 */
static void
eb_set_relay(FunctionCallInfo fcinfo, const char *name, const char *kafka_topic,
			 const char *on_error, const char *start_at, EbBackfillStart start,
			 TimestampTz ts)
{
	EbTopic    *topic;
	EbSpi		spi;
	Oid			argtypes[2] = {INT4OID, TEXTOID};
	Datum		values[2];
	char		nulls[2] = {' ', ' '};
	bool		ready = true;

	topic = eb_topic_get(name, false);
	eb_check_topic_owner(topic);
	if (kafka_topic)
	{
		Oid			owner = topic->owner;

		/* the relay checks the owner again for every event it decodes */
		eb_relay_check_allowed(GetUserId(), kafka_topic, "relay into");
		if (owner != GetUserId())
			eb_relay_check_allowed(owner, kafka_topic, "relay into");
		eb_relay_check_served("eventbus.relay_topic()", false);
	}
	LockRelationOid(topic->relid, ShareUpdateExclusiveLock);
	if (kafka_topic)
		ready = eb_backfill_begin(topic, start, ts, start_at ? start_at : "now");
	else
		eb_backfill_end(topic);

	values[0] = Int32GetDatum(topic->topic_id);
	if (kafka_topic)
		values[1] = CStringGetTextDatum(kafka_topic);
	else
		nulls[1] = 'n';
	eb_spi_begin(&spi, true);
	eb_spi_exec("UPDATE eventbus.topic SET relay_to = $2 WHERE topic_id = $1",
				2, argtypes, values, nulls, false);
	eb_spi_end(&spi);

	/* the relay's output plugin sees this when decoding past our commit */
	eb_catalog_changed();

	if (kafka_topic)
	{
		eb_relay_set_policy(topic, on_error);
		eb_relay_check_partitions(topic, kafka_topic);
	}

	if (kafka_topic && !ready)
		ereport(NOTICE,
				(errmsg("the relay has not started in this database yet"),
				 errdetail("Events committed from now on are sent from the topic's tables once the relay has a replication slot, then from WAL (see eventbus.relay_backfill)."),
				 errhint("Set eventbus.kafka_brokers and reload the configuration if it is not set.")));
}

/* The on_error argument of relay_topic(), checked. */
static char *
eb_relay_on_error_arg(FunctionCallInfo fcinfo, int argno)
{
	char	   *on_error;

	eb_arg_not_null(fcinfo, argno, "on_error");
	on_error = text_to_cstring(PG_GETARG_TEXT_PP(argno));
	if (strcmp(on_error, "stop") != 0 && strcmp(on_error, "dead_letter") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid on_error \"%s\"", on_error),
				 errdetail("on_error is 'stop' (relaying waits at an event Kafka refuses for good) or 'dead_letter' (the event is recorded in eventbus.relay_dead_letter and relaying goes on).")));
	return on_error;
}

/*
 * relay_topic(topic text, kafka_topic text, start_at text, format text,
 *			   on_error text, cloudevents_source text)
 *
 * start_at: 'now', 'earliest', 'last_acknowledged' or a timestamp (a
 * backfill from the topic's tables, relay_backfill.c).
 */
Datum
eb_relay_topic_v2(PG_FUNCTION_ARGS)
{
	char	   *name = eb_arg_name(fcinfo, 0, "topic");
	char	   *kafka_topic = PG_ARGISNULL(1) ? name : eb_kafka_topic_arg(fcinfo, 1);
	char	   *start_at;
	const char *format;
	const char *source;
	char	   *on_error;
	EbBackfillStart start;
	TimestampTz ts;

	eb_arg_not_null(fcinfo, 2, "start_at");
	start_at = text_to_cstring(PG_GETARG_TEXT_PP(2));
	start = eb_backfill_parse_start(start_at, &ts);
	eb_relay_format_args(fcinfo, 3, 5, &format, &source);
	on_error = eb_relay_on_error_arg(fcinfo, 4);
	eb_check_writable("eventbus.relay_topic()");
	eb_set_relay(fcinfo, name, kafka_topic, on_error, start_at, start, ts);
	eb_relay_set_format(name, format, source);
	PG_RETURN_VOID();
}

/*
 * relay_topic(topic text, kafka_topic text, on_error text): the function of
 * version 0.1.0's SQL objects, served until ALTER EXTENSION ... UPDATE
 * (messages plain: those objects have no eventbus.relay_format).
 */
Datum
eb_relay_topic(PG_FUNCTION_ARGS)
{
	char	   *name = eb_arg_name(fcinfo, 0, "topic");
	char	   *kafka_topic = PG_ARGISNULL(1) ? name : eb_kafka_topic_arg(fcinfo, 1);
	char	   *on_error = eb_relay_on_error_arg(fcinfo, 2);

	eb_check_writable("eventbus.relay_topic()");
	eb_set_relay(fcinfo, name, kafka_topic, on_error, NULL, EB_START_NOW, 0);
	PG_RETURN_VOID();
}

/*
 * stop_relay(topic text)
 */
Datum
eb_stop_relay(PG_FUNCTION_ARGS)
{
	char	   *name = eb_arg_name(fcinfo, 0, "topic");

	eb_check_writable("eventbus.stop_relay()");
	eb_set_relay(fcinfo, name, NULL, NULL, NULL, EB_START_NOW, 0);
	PG_RETURN_VOID();
}

static void
eb_put_field(StringInfo buf, const char *data, int32 len)
{
	appendBinaryStringInfo(buf, (const char *) &len, sizeof(int32));
	if (len > 0)
		appendBinaryStringInfo(buf, data, len);
}

/*
 * outbox(kafka_topic text, value jsonb, key text, headers jsonb) returns uuid
 */
Datum
eb_outbox(PG_FUNCTION_ARGS)
{
	char	   *kafka_topic = eb_kafka_topic_arg(fcinfo, 0);
	Jsonb	   *value;
	text	   *key = PG_ARGISNULL(2) ? NULL : PG_GETARG_TEXT_PP(2);
	Jsonb	   *headers = PG_ARGISNULL(3) ? NULL : PG_GETARG_JSONB_P(3);
	pg_uuid_t  *id = palloc(sizeof(pg_uuid_t));
	TimestampTz now = GetCurrentTimestamp();
	StringInfoData buf;
	char	   *text;
	Oid			sender = GetUserId();
	uint8		relay_key[EB_RELAY_KEY_LEN];
	size_t		textlen;
	uint64		sent;
	uint8		mac[EB_OUTBOX_MAC_LEN];

	eb_require_shmem();
	eb_check_writable("eventbus.outbox()");
	eb_arg_not_null(fcinfo, 1, "value");
	value = PG_GETARG_JSONB_P(1);
	if (headers)
		eb_check_headers(headers);
	headers = eb_trace_headers(headers);
	eb_check_size(PointerGetDatum(value), key, headers);
	/* the relay checks the sender again when it decodes the message */
	eb_relay_check_allowed(sender, kafka_topic, "send to");
	eb_relay_check_served("eventbus.outbox()", true);

	if (!eb_relay_key_read(relay_key))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the relay key of this database is missing"),
				 errdetail("Table eventbus.relay_key holds the key that authenticates outbox messages; it is created by CREATE EXTENSION."),
				 errhint("Recreate the extension, or insert 32 random bytes into eventbus.relay_key as a superuser.")));

	eb_uuid_v7(id);
	initStringInfo(&buf);
	appendStringInfoChar(&buf, EB_OUTBOX_FORMAT);
	appendStringInfoSpaces(&buf, EB_OUTBOX_MAC_LEN);	/* the code, below */
	appendBinaryStringInfo(&buf, (const char *) &sender, sizeof(Oid));
	eb_put_field(&buf, kafka_topic, strlen(kafka_topic));
	if (key)
		eb_put_field(&buf, VARDATA_ANY(key), VARSIZE_ANY_EXHDR(key));
	else
		eb_put_field(&buf, NULL, -1);
	appendBinaryStringInfo(&buf, (const char *) id->data, sizeof(id->data));
	appendBinaryStringInfo(&buf, (const char *) &now, sizeof(int64));
	/* the datum as it is (detoasted, 4-byte header): no parser needed */
	if (headers)
		eb_put_field(&buf, (const char *) headers, VARSIZE(headers));
	else
		eb_put_field(&buf, NULL, -1);
	text = JsonbToCString(NULL, &value->root, VARSIZE(value));
	textlen = strlen(text);

	/*
	 * As the relay sends it: the value as this JSON text, the key, the
	 * headers' names and values, and eventbus-event-id and eventbus-lsn.
	 * Kafka would refuse a larger one.
	 */
	sent = textlen + (key ? VARSIZE_ANY_EXHDR(key) : 0) +
		eb_headers_sent_size(headers, NULL, NULL) + EB_OUTBOX_HEADERS_SIZE;
	if (sent > (uint64) eb_max_event_size)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("outbox message of %llu bytes as sent to Kafka exceeds eventbus.max_event_size (%d bytes)",
						(unsigned long long) sent, eb_max_event_size),
				 errdetail("The relay sends the value as JSON text (%zu bytes; %zu bytes as stored), with the key and the headers.",
						   textlen, (Size) (VARSIZE(value) - VARHDRSZ)),
				 errhint("Send large payloads elsewhere and a reference in the message; control characters in strings take six bytes each as JSON text.")));
	eb_put_field(&buf, text, textlen);
	if (!eb_outbox_mac(relay_key, buf.data, buf.len, mac))
		elog(ERROR, "could not compute the authentication code of an outbox message");
	memcpy(buf.data + 1, mac, EB_OUTBOX_MAC_LEN);

	(void) eb_log_logical_message(EB_OUTBOX_PREFIX, buf.data, buf.len, true);
	eb_outbox_count(GetCurrentTransactionNestLevel(), 1);
	eb_xact_published = true;
	PG_RETURN_UUID_P(id);
}

/*
 * relay_stats(): the relay worker's status from shared memory.
 */
Datum
eb_relay_stats(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[17];
	bool		nulls[17];
	EbRelayShared copy;
	EbRelayShared *r;
	uint64		committed = 0;
	uint64		relayed = 0;

	eb_require_shmem();
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	/* this database's relay; none yet: not started */
	r = eb_relay_state(MyDatabaseId);
	memset(&copy, 0, offsetof(EbRelayShared, outbox_committed));
	strlcpy(copy.state, "not started", EB_RELAY_STATE_LEN);
	if (r != NULL)
	{
		SpinLockAcquire(&r->mutex);
		memcpy(&copy, r, offsetof(EbRelayShared, outbox_committed));
		SpinLockRelease(&r->mutex);
		committed = pg_atomic_read_u64(&r->outbox_committed);
		relayed = pg_atomic_read_u64(&r->outbox_relayed);
	}

	memset(nulls, 0, sizeof(nulls));
	values[0] = CStringGetTextDatum(copy.pid != 0 || strcmp(copy.state, "not started") != 0 ?
									copy.state :
									(eb_kafka_brokers && eb_kafka_brokers[0] ? "not started" : "not configured"));
	values[1] = Int32GetDatum(copy.pid);
	nulls[1] = copy.pid == 0;
	values[2] = CStringGetTextDatum(copy.slot_name);
	nulls[2] = copy.slot_name[0] == '\0';
	values[3] = Int64GetDatum((int64) copy.events_relayed);
	values[4] = Int64GetDatum((int64) copy.bytes_relayed);
	values[5] = Int64GetDatum(copy.in_flight);
	values[6] = Int64GetDatum(committed > relayed ? (int64) (committed - relayed) : 0);
	values[7] = Float8GetDatum(copy.latency_p50_ms);
	nulls[7] = !copy.have_latency;
	values[8] = Float8GetDatum(copy.latency_p99_ms);
	nulls[8] = !copy.have_latency;
	values[9] = CStringGetTextDatum(copy.last_error);
	nulls[9] = copy.last_error[0] == '\0';
	values[10] = TimestampTzGetDatum(copy.last_error_at);
	nulls[10] = copy.last_error_at == 0;
	values[11] = TimestampTzGetDatum(copy.last_ack_at);
	nulls[11] = copy.last_ack_at == 0;
	values[12] = TimestampTzGetDatum(copy.started_at);
	nulls[12] = copy.started_at == 0;
	values[13] = Int64GetDatum((int64) copy.skipped);
	values[14] = LSNGetDatum(copy.last_skipped_lsn);
	nulls[14] = XLogRecPtrIsInvalid(copy.last_skipped_lsn);
	values[15] = CStringGetTextDatum(copy.last_skip_reason);
	nulls[15] = copy.last_skip_reason[0] == '\0';
	values[16] = TimestampTzGetDatum(copy.last_error_resolved_at);
	nulls[16] = copy.last_error_resolved_at == 0;
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

static EbEmitResult
eb_count_emit(void *arg, EbTopic *topic, TupleTableSlot *slot)
{
	return EB_EMIT_TAKEN;
}

/*
 * relay_backlog(): per relayed topic, the positions below the read horizon
 * (committed, or rolled back) after the last position Kafka acknowledged,
 * summed over partitions: an upper bound of the events waiting for Kafka,
 * from shared memory and one index probe per partition (0 when no committed
 * event follows: rolled-back positions at the end do not count); NULL while
 * unknown
 * (nothing acknowledged since startup in a partition that has events).
 */
Datum
eb_relay_backlog(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	EbSpi		spi;
	List	   *names = NIL;
	List	   *kafka = NIL;
	ListCell   *lc1,
			   *lc2;
	uint64		i;
	MemoryContext upper = CurrentMemoryContext;

	eb_require_shmem();
	InitMaterializedSRF(fcinfo, 0);

	eb_spi_begin(&spi, true);
	eb_spi_exec("SELECT topic, relay_to FROM eventbus.topic WHERE relay_to IS NOT NULL ORDER BY topic",
				0, NULL, NULL, NULL, true);
	for (i = 0; i < SPI_processed; i++)
	{
		MemoryContext old = MemoryContextSwitchTo(upper);

		names = lappend(names, pstrdup(SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1)));
		kafka = lappend(kafka, pstrdup(SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2)));
		MemoryContextSwitchTo(old);
	}
	eb_spi_end(&spi);

	forboth(lc1, names, lc2, kafka)
	{
		EbTopic    *topic = eb_topic_get((char *) lfirst(lc1), true);
		Datum		values[3];
		bool		nulls[3] = {false, false, false};
		int64		backlog = 0;
		bool		known = true;
		int32		p;

		if (topic == NULL)
			continue;
		for (p = 0; p < topic->partitions && !RecoveryInProgress(); p++)
		{
			int64		end;
			int64		horizon;
			int64		relayed;
			EbPartShared *part;

			horizon = eb_read_horizon(topic, p, &end);
			part = eb_part_state(topic, p);
			LWLockAcquire(&part->lock, LW_SHARED);
			relayed = part->relayed_position;
			LWLockRelease(&part->lock);
			/* one index probe: 0 when no committed event follows */
			if (horizon <= relayed + 1 ||
				eb_read_partition(topic, p, relayed, 1, GetActiveSnapshot(),
								  eb_count_emit, NULL) == 0)
				continue;
			if (relayed >= 0)
				backlog += horizon - (relayed + 1);
			else
				known = false;
		}
		values[0] = CStringGetTextDatum(topic->name);
		values[1] = CStringGetTextDatum((char *) lfirst(lc2));
		values[2] = Int64GetDatum(backlog);
		nulls[2] = !known || RecoveryInProgress();
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/* The pattern argument of allow_relay()/disallow_relay(), checked. */
static char *
eb_relay_pattern_arg(FunctionCallInfo fcinfo)
{
	char	   *pattern;
	size_t		len;

	eb_arg_not_null(fcinfo, 1, "kafka_topic");
	pattern = text_to_cstring(PG_GETARG_TEXT_PP(1));
	len = strlen(pattern);
	if (len > 0 && pattern[len - 1] == '*')
	{
		char	   *prefix = pnstrdup(pattern, len - 1);

		/* a prefix of a legal name: legal characters, short enough */
		if (len - 1 == 0 ||
			(len - 1 < EB_KAFKA_TOPIC_MAX && strspn(prefix, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == len - 1))
			return pattern;
	}
	else if (eb_kafka_topic_name_valid(pattern))
		return pattern;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid Kafka topic or prefix \"%s\"", pattern),
			 errdetail("Give a Kafka topic name, or a prefix of one followed by '*' ('*' alone: every topic).")));
	return NULL;				/* keep compiler quiet */
}

static Oid
eb_relay_role_arg(FunctionCallInfo fcinfo)
{
	Oid			roleid;

	eb_arg_not_null(fcinfo, 0, "role");
	roleid = PG_GETARG_OID(0);
	if (!SearchSysCacheExists1(AUTHOID, ObjectIdGetDatum(roleid)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("role with OID %u does not exist", roleid)));
	return roleid;
}

static void
eb_relay_require_superuser(const char *func)
{
	if (!superuser())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for function %s", func),
				 errdetail("Only superusers decide which Kafka topics roles may relay into.")));
}

/*
 * Runs a statement on eventbus.relay_allowed with parameters role and
 * pattern; returns the rows processed.
 */
static uint64
eb_relay_allowed_exec(const char *sql, Oid roleid, const char *pattern)
{
	EbSpi		spi;
	Oid			argtypes[2] = {REGROLEOID, TEXTOID};
	Datum		values[2];
	uint64		n;

	eb_spi_begin(&spi, false);
	values[0] = ObjectIdGetDatum(roleid);
	values[1] = CStringGetTextDatum(pattern);
	eb_spi_exec(sql, 2, argtypes, values, NULL, false);
	n = SPI_processed;
	eb_spi_end(&spi);
	/* the relay's output plugin sees this when decoding past our commit */
	CacheInvalidateRelcacheByRelid(eb_relay_catalog_relid("relay_allowed"));
	return n;
}

/*
 * allow_relay(role regrole, kafka_topic text): superusers only.
 */
Datum
eb_allow_relay(PG_FUNCTION_ARGS)
{
	Oid			roleid;
	char	   *pattern;

	eb_relay_require_superuser("eventbus.allow_relay");
	roleid = eb_relay_role_arg(fcinfo);
	pattern = eb_relay_pattern_arg(fcinfo);
	eb_check_writable("eventbus.allow_relay()");
	/* no ON CONFLICT on a catalog table: serialize, then insert if missing */
	LockRelationOid(eb_relay_catalog_relid("relay_allowed"), ShareRowExclusiveLock);
	(void) eb_relay_allowed_exec("INSERT INTO eventbus.relay_allowed (role, kafka_topic) SELECT $1, $2 WHERE NOT EXISTS (SELECT FROM eventbus.relay_allowed WHERE role = $1 AND kafka_topic = $2)",
								 roleid, pattern);
	PG_RETURN_VOID();
}

/*
 * disallow_relay(role regrole, kafka_topic text) returns boolean: superusers
 * only; true if the entry existed.
 */
Datum
eb_disallow_relay(PG_FUNCTION_ARGS)
{
	Oid			roleid;
	char	   *pattern;

	eb_relay_require_superuser("eventbus.disallow_relay");
	roleid = eb_relay_role_arg(fcinfo);
	pattern = eb_relay_pattern_arg(fcinfo);
	eb_check_writable("eventbus.disallow_relay()");
	PG_RETURN_BOOL(eb_relay_allowed_exec("DELETE FROM eventbus.relay_allowed WHERE role = $1 AND kafka_topic = $2",
										 roleid, pattern) > 0);
}
