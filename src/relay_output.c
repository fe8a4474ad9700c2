/*-------------------------------------------------------------------------
 *
 * relay_output.c
 *	  The logical decoding output plugin of the Kafka relay.
 *
 * The relay worker decodes WAL in its own process with this library as the
 * output plugin of its slot.  The callbacks turn committed rows of relayed
 * topics' segment tables, and outbox messages, into EbRelayMessages and hand
 * them to the worker, transaction by transaction in commit order, through
 * the EbRelayWriter the worker put in the decoding context
 * (output_writer_private; relay.h).  The plugin calls nothing else of the
 * worker.  They never write to the database.
 *
 * The plugin trusts only what the extension wrote.  A relation is relayed
 * only if eventbus.segment registers it (by OID) as a segment table of a
 * topic whose eventbus.topic row has relay_to set; both are catalog tables
 * for logical decoding (user_catalog_table), read with the historic
 * snapshot of the transaction being decoded, so a topic is relayed exactly
 * from the transaction that called relay_topic() on.  Lookups are cached
 * per relation; relay_topic() and stop_relay() invalidate eventbus.topic's
 * relcache entry, which the decoding replays at the right point and which
 * empties the cache.
 *
 * Outbox messages are relayed only if their authentication code verifies
 * with the database's relay key (eventbus.relay_key, read with the historic
 * snapshot).  Events are relayed only if the topic's owner, and outbox
 * messages only if their sender, may use the Kafka topic according to
 * eventbus.relay_allowed as of the decoded transaction (cached per role and
 * Kafka topic; allow_relay() and disallow_relay() invalidate that table's
 * relcache entry, and role or membership changes empty the caches too).
 *
 * A transaction is relayed whole or not at all: relay_topic() and
 * stop_relay() wait for every transaction publishing to the topic to end,
 * and make later ones wait for their own commit (relay_backfill.c, the
 * seam), so the historic snapshot of every change of a transaction sees the
 * same relay_to for the topic as its commit does.  Nothing is buffered.
 *
 * Events of positions a backfill sends from the topic's tables (its seam,
 * relay_backfill.c) are left out here.  eb_relay_stored_message() builds
 * the messages of those with the same code, and the backfill sends them
 * through the worker's produce path.
 *
 * Nothing in WAL can stop the relay: content that cannot be relayed (a
 * registered table whose columns are not an event table's, a row with a
 * NULL where an event has none or a partition out of range, an outbox
 * message that does not verify or is malformed, a Kafka topic the role may
 * not use) is skipped, never an error.  Skips are counted
 * in shared memory with the LSN and the reason (relay_status) and logged at
 * most once a minute.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "catalog/namespace.h"
#include "miscadmin.h"
#include "replication/logical.h"
#include "replication/output_plugin.h"
#include "replication/reorderbuffer.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "settings.h"
#include "compat.h"
#include "relay.h"
#include "relay_json.h"
#include "shmem.h"

extern PGDLLEXPORT void _PG_output_plugin_init(OutputPluginCallbacks *cb);

/* Column types of a segment table, in order (as position.c checks them). */
static const Oid eb_relay_event_types[Natts_ev] = {
	EB_EVENT_TYPE_OIDS
};

#define EB_SKIP_LOG_INTERVAL_MS 60000

struct EbRelayTarget
{
	Oid			relid;			/* hash key */
	bool		relayed;
	char		skip[EB_RELAY_ERROR_LEN];	/* non-empty: skip its rows, why */
	char		topic[NAMEDATALEN];
	char		kafka_topic[EB_KAFKA_TOPIC_MAX + 1];
	int32		topic_id;
	int32		partitions;
	int64		uid;
	Oid			owner;			/* the topic's owner, InvalidOid if unknown */
	bool		cloudevents;	/* format 'cloudevents' (eventbus.relay_format) */
	char		ce_source[EB_CE_SOURCE_MAX + 1];
};

/* Whether a role may send outbox messages to a Kafka topic. */
typedef struct EbSenderKey
{
	Oid			roleid;
	char		kafka_topic[EB_KAFKA_TOPIC_MAX + 1];
} EbSenderKey;

typedef struct EbSender
{
	EbSenderKey key;			/* hash key */
	bool		allowed;
} EbSender;

static HTAB *targets = NULL;
static EbRelayTarget *last_target = NULL;	/* an entry of targets, or NULL */
static HTAB *senders = NULL;
static Oid	topic_catalog_relid = InvalidOid;
static Oid	segment_catalog_relid = InvalidOid;
static Oid	allowed_catalog_relid = InvalidOid;
static MemoryContext change_cxt = NULL;
static bool callback_registered = false;
static TimestampTz skip_logged_at = 0;
static TimestampTz ce_dropped_logged_at = 0;
static uint64 ce_dropped = 0;

/* the relay key, read once per eventbus.relay_key incarnation */
static Oid	key_relid = InvalidOid;
static bool have_key = false;
static uint8 relay_key[EB_RELAY_KEY_LEN];

/*
 * Content that cannot be relayed: count it, remember the LSN and the
 * reason for relay_status, and log it (at most once a minute).
 */
static void
eb_relay_skip(XLogRecPtr lsn, const char *reason)
{
	TimestampTz now = GetCurrentTimestamp();
	EbRelayShared *r = eb_relay_state(MyDatabaseId);
	uint64		count = 0;

	if (r != NULL)
	{
		SpinLockAcquire(&r->mutex);
		count = ++r->skipped;
		r->last_skipped_lsn = lsn;
		strlcpy(r->last_skip_reason, reason, EB_RELAY_ERROR_LEN);
		SpinLockRelease(&r->mutex);
	}

	if (skip_logged_at == 0 ||
		TimestampDifferenceExceeds(skip_logged_at, now, EB_SKIP_LOG_INTERVAL_MS))
	{
		ereport(WARNING,
				(errmsg("pg_eventbus relay: skipped content at %X/%X that cannot be relayed: %s",
						LSN_FORMAT_ARGS(lsn), reason),
				 errdetail("%llu changes or messages were skipped since the server started.",
						   (unsigned long long) count)));
		skip_logged_at = now;
	}
}


/*
 * Relcache invalidation: a change of eventbus.topic (relay_topic() and
 * stop_relay() send one), eventbus.segment or eventbus.relay_allowed
 * (allow_relay() and disallow_relay() send one) may change any entry;
 * otherwise forget the relation's entry.  No catalog access here.
 */
static void
eb_relay_invalidate(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == allowed_catalog_relid)
	{
		if (senders != NULL)
			hash_destroy(senders);
		senders = NULL;
	}
	last_target = NULL;
	if (targets == NULL)
		return;
	if (relid == InvalidOid || relid == topic_catalog_relid ||
		relid == segment_catalog_relid || relid == allowed_catalog_relid)
	{
		hash_destroy(targets);
		targets = NULL;
	}
	else
		(void) hash_search(targets, &relid, HASH_REMOVE, NULL);
}

/* Roles or memberships changed: who may relay where may have changed. */
static void
eb_relay_invalidate_roles(Datum arg, int cacheid, uint32 hashvalue)
{
	eb_relay_invalidate(arg, InvalidOid);
}

/* Forget cached lookups (between decoding sessions). */
void
eb_relay_output_reset(void)
{
	eb_relay_invalidate((Datum) 0, InvalidOid);
	have_key = false;
}

/* The database's relay key as of the decoded transaction; false if none. */
static bool
eb_relay_key(uint8 *key)
{
	Oid			relid = eb_relay_catalog_relid("relay_key");

	if (!have_key || relid != key_relid)
	{
		have_key = OidIsValid(relid) && eb_relay_key_read(relay_key);
		key_relid = relid;
	}
	if (have_key)
		memcpy(key, relay_key, EB_RELAY_KEY_LEN);
	return have_key;
}

/*
 * May this role relay into or send to this Kafka topic, as of the decoded
 * transaction?  Cached per role and Kafka topic.
 */
static bool
eb_relay_sender_allowed(Oid roleid, const char *kafka_topic)
{
	EbSenderKey key;
	EbSender   *e;
	bool		found;
	bool		allowed;

	allowed_catalog_relid = eb_relay_catalog_relid("relay_allowed");
	memset(&key, 0, sizeof(key));
	key.roleid = roleid;
	strlcpy(key.kafka_topic, kafka_topic, sizeof(key.kafka_topic));
	if (senders != NULL &&
		(e = hash_search(senders, &key, HASH_FIND, NULL)) != NULL)
		return e->allowed;

	allowed = eb_relay_allowed(roleid, kafka_topic, NULL);

	/* the lookup may have processed invalidations */
	if (senders == NULL)
	{
		HASHCTL		ctl;

		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = sizeof(EbSenderKey);
		ctl.entrysize = sizeof(EbSender);
		ctl.hcxt = TopMemoryContext;
		senders = hash_create("pg_eventbus relay senders", 64, &ctl,
							  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	e = hash_search(senders, &key, HASH_ENTER, &found);
	e->allowed = allowed;
	return allowed;
}

/*
 * Finds the topic of a registered segment table in eventbus.segment, by
 * OID, with the historic snapshot; InvalidOid-like -1 if none.
 */
static int32
eb_relay_segment_topic(Oid relid)
{
	Oid			catalog = eb_relay_catalog_relid("segment");
	Relation	rel;
	SysScanDesc scan;
	HeapTuple	tup;
	AttrNumber	att_topic,
				att_table;
	int32		topic_id = -1;

	if (!OidIsValid(catalog))
		return -1;
	segment_catalog_relid = catalog;
	att_topic = get_attnum(catalog, "topic_id");
	att_table = get_attnum(catalog, "table_oid");
	if (att_topic == InvalidAttrNumber || att_table == InvalidAttrNumber)
		return -1;

	rel = table_open(catalog, AccessShareLock);
	scan = systable_beginscan(rel, InvalidOid, false, NULL, 0, NULL);
	while ((tup = systable_getnext(scan)) != NULL)
	{
		bool		isnull;
		Datum		d = heap_getattr(tup, att_table, RelationGetDescr(rel), &isnull);

		if (isnull || DatumGetObjectId(d) != relid)
			continue;
		d = heap_getattr(tup, att_topic, RelationGetDescr(rel), &isnull);
		if (!isnull)
			topic_id = DatumGetInt32(d);
		break;
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return topic_id;
}

/*
 * Reads the topic's row of eventbus.topic with the historic snapshot.
 */
static void
eb_relay_lookup(int32 topic_id, EbRelayTarget *t)
{
	Oid			relid = eb_relay_catalog_relid("topic");
	Relation	rel;
	SysScanDesc scan;
	HeapTuple	tup;
	AttrNumber	att_id,
				att_topic,
				att_relay,
				att_partitions,
				att_uid,
				att_owner;

	t->relayed = false;
	if (!OidIsValid(relid))
		return;
	topic_catalog_relid = relid;
	att_id = get_attnum(relid, "topic_id");
	att_topic = get_attnum(relid, "topic");
	att_relay = get_attnum(relid, "relay_to");
	att_partitions = get_attnum(relid, "partitions");
	att_uid = get_attnum(relid, "uid");
	att_owner = get_attnum(relid, "owner");
	if (att_id == InvalidAttrNumber || att_topic == InvalidAttrNumber ||
		att_relay == InvalidAttrNumber || att_partitions == InvalidAttrNumber ||
		att_uid == InvalidAttrNumber)
		return;

	rel = table_open(relid, AccessShareLock);
	scan = systable_beginscan(rel, InvalidOid, false, NULL, 0, NULL);
	while ((tup = systable_getnext(scan)) != NULL)
	{
		TupleDesc	desc = RelationGetDescr(rel);
		bool		isnull;
		bool		n1,
					n2,
					n3;
		Datum		d = heap_getattr(tup, att_id, desc, &isnull);
		Datum		name,
					partitions,
					uid;

		if (isnull || DatumGetInt32(d) != topic_id)
			continue;
		d = heap_getattr(tup, att_relay, desc, &isnull);
		name = heap_getattr(tup, att_topic, desc, &n1);
		partitions = heap_getattr(tup, att_partitions, desc, &n2);
		uid = heap_getattr(tup, att_uid, desc, &n3);
		if (!isnull && !n1 && !n2 && !n3)
		{
			t->relayed = true;
			text_to_cstring_buffer(DatumGetTextPP(d), t->kafka_topic,
								   sizeof(t->kafka_topic));
			text_to_cstring_buffer(DatumGetTextPP(name), t->topic, sizeof(t->topic));
			t->partitions = DatumGetInt32(partitions);
			t->uid = DatumGetInt64(uid);
			t->owner = InvalidOid;
			if (att_owner != InvalidAttrNumber)
			{
				d = heap_getattr(tup, att_owner, desc, &isnull);
				if (!isnull)
					t->owner = DatumGetObjectId(d);
			}
		}
		break;
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
}

/*
 * Appends s to buf, percent-encoding every byte but RFC 3986's unreserved
 * characters.
 */
static void
eb_append_uri_encoded(StringInfo buf, const char *s)
{
	for (; *s; s++)
	{
		unsigned char c = (unsigned char) *s;

		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			(c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' || c == '~')
			appendStringInfoChar(buf, c);
		else
			appendStringInfo(buf, "%%%02X", c);
	}
}

/*
 * Reads the topic's row of eventbus.relay_format with the historic
 * snapshot: is it relayed as CloudEvents, with which ce_source (default
 * /postgresql/<database>/<topic>)?  No row, or a row the relay cannot
 * read, means 'plain'.
 */
static void
eb_relay_format_lookup(int32 topic_id, EbRelayTarget *t)
{
	Oid			relid = eb_relay_catalog_relid("relay_format");
	Relation	rel;
	SysScanDesc scan;
	HeapTuple	tup;
	AttrNumber	att_id,
				att_format,
				att_source;
	bool		have_source = false;

	t->cloudevents = false;
	t->ce_source[0] = '\0';
	if (!OidIsValid(relid))
		return;
	att_id = get_attnum(relid, "topic_id");
	att_format = get_attnum(relid, "format");
	att_source = get_attnum(relid, "cloudevents_source");
	if (att_id == InvalidAttrNumber || att_format == InvalidAttrNumber ||
		att_source == InvalidAttrNumber)
		return;

	rel = table_open(relid, AccessShareLock);
	scan = systable_beginscan(rel, InvalidOid, false, NULL, 0, NULL);
	while ((tup = systable_getnext(scan)) != NULL)
	{
		TupleDesc	desc = RelationGetDescr(rel);
		bool		isnull;
		Datum		d = heap_getattr(tup, att_id, desc, &isnull);
		char	   *format;

		if (isnull || TupleDescAttr(desc, att_id - 1)->atttypid != INT4OID ||
			DatumGetInt32(d) != topic_id)
			continue;
		d = heap_getattr(tup, att_format, desc, &isnull);
		if (isnull || TupleDescAttr(desc, att_format - 1)->atttypid != TEXTOID)
			break;
		format = TextDatumGetCString(d);
		t->cloudevents = strcmp(format, "cloudevents") == 0;
		d = heap_getattr(tup, att_source, desc, &isnull);
		if (t->cloudevents && !isnull &&
			TupleDescAttr(desc, att_source - 1)->atttypid == TEXTOID)
		{
			text_to_cstring_buffer(DatumGetTextPP(d), t->ce_source, sizeof(t->ce_source));
			have_source = t->ce_source[0] != '\0';
		}
		break;
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);

	if (t->cloudevents && !have_source)
	{
		StringInfoData buf;
		char	   *dbname = get_database_name(MyDatabaseId);

		initStringInfo(&buf);
		appendStringInfoString(&buf, "/postgresql/");
		eb_append_uri_encoded(&buf, dbname ? dbname : "");
		appendStringInfoChar(&buf, '/');
		eb_append_uri_encoded(&buf, t->topic);
		strlcpy(t->ce_source, buf.data, sizeof(t->ce_source));
		pfree(buf.data);
	}
}

/* Has the relation exactly the columns of an event table? */
static bool
eb_relay_columns_ok(TupleDesc desc)
{
	int			i;

	if (desc->natts != Natts_ev)
		return false;
	for (i = 0; i < Natts_ev; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attisdropped || att->atttypid != eb_relay_event_types[i])
			return false;
	}
	return true;
}

/*
 * Is this relation a registered segment table of a relayed topic?  Returns
 * its cache entry (->skip says why its rows cannot be relayed, if so;
 * ->relayed false: not relayed), which stays valid until the next catalog
 * access can process invalidations: for the rest of the change.  The entry
 * is written only after the lookup, which may process invalidations.  The
 * last relation's entry is remembered, as consecutive changes are mostly of
 * the same segment table.
 */
static EbRelayTarget *
eb_relay_target(Relation rel)
{
	Oid			relid = RelationGetRelid(rel);
	EbRelayTarget *t;
	EbRelayTarget out;
	int32		topic_id;

	if (last_target != NULL && last_target->relid == relid)
		return last_target;
	if (targets != NULL &&
		(t = hash_search(targets, &relid, HASH_FIND, NULL)) != NULL)
	{
		last_target = t;
		return t;
	}

	memset(&out, 0, sizeof(out));
	out.relid = relid;
	out.partitions = -1;
	allowed_catalog_relid = eb_relay_catalog_relid("relay_allowed");
	topic_id = eb_relay_segment_topic(relid);
	out.topic_id = topic_id;
	if (topic_id >= 0)
		eb_relay_lookup(topic_id, &out);
	if (out.relayed)
		eb_relay_format_lookup(topic_id, &out);
	if (out.relayed && !eb_relay_columns_ok(RelationGetDescr(rel)))
		snprintf(out.skip, sizeof(out.skip),
				 "segment table \"%s\" of topic \"%s\" does not have the columns of an event table",
				 RelationGetRelationName(rel), out.topic);
	else if (out.relayed && !eb_kafka_topic_name_valid(out.kafka_topic))
		snprintf(out.skip, sizeof(out.skip),
				 "topic \"%s\" is relayed to an invalid Kafka topic name",
				 out.topic);
	else if (out.relayed &&
			 (!OidIsValid(out.owner) ||
			  !eb_relay_sender_allowed(out.owner, out.kafka_topic)))
		snprintf(out.skip, sizeof(out.skip),
				 "the owner of topic \"%s\" is not allowed to relay into Kafka topic \"%s\" (see eventbus.allow_relay())",
				 out.topic, out.kafka_topic);

	if (targets == NULL)
	{
		HASHCTL		ctl;

		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(EbRelayTarget);
		ctl.hcxt = TopMemoryContext;
		targets = hash_create("pg_eventbus relay targets", 64, &ctl,
							  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	t = hash_search(targets, &relid, HASH_ENTER, NULL);
	*t = out;
	last_target = t;
	return t;
}

static void
eb_relay_not_served(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("the pg_eventbus output plugin only serves the pg_eventbus relay worker")));
}

/* The relay worker's writer (relay.h); an error for any other caller. */
static EbRelayWriter *
eb_relay_writer(LogicalDecodingContext *ctx)
{
	EbRelayWriter *w = (EbRelayWriter *) ctx->output_writer_private;

	if (w == NULL || w->magic != EB_RELAY_WRITER_MAGIC)
		eb_relay_not_served();
	return w;
}

static void
eb_output_startup(LogicalDecodingContext *ctx, OutputPluginOptions *opt, bool is_init)
{
	opt->output_type = OUTPUT_PLUGIN_BINARY_OUTPUT;
	/* the writer is set after startup: eb_relay_writer() checks it then */
	if (!is_init && MyBackendType != B_BG_WORKER)
		eb_relay_not_served();
	if (!callback_registered)
	{
		CacheRegisterRelcacheCallback(eb_relay_invalidate, (Datum) 0);
		CacheRegisterSyscacheCallback(AUTHOID, eb_relay_invalidate_roles, (Datum) 0);
		CacheRegisterSyscacheCallback(AUTHMEMMEMROLE, eb_relay_invalidate_roles, (Datum) 0);
		callback_registered = true;
	}
	if (change_cxt == NULL)
		change_cxt = AllocSetContextCreate(TopMemoryContext, "pg_eventbus relay change",
										   ALLOCSET_DEFAULT_SIZES);
}

static void
eb_output_shutdown(LogicalDecodingContext *ctx)
{
	eb_relay_output_reset();
}

static void
eb_output_begin(LogicalDecodingContext *ctx, ReorderBufferTXN *txn)
{
	eb_relay_writer(ctx)->begin(txn->final_lsn);
}

static void
eb_output_commit(LogicalDecodingContext *ctx, ReorderBufferTXN *txn, XLogRecPtr commit_lsn)
{
	eb_relay_writer(ctx)->commit(txn->end_lsn, eb_txn_commit_time(txn));
}

static int64
eb_timestamp_ms(TimestampTz ts)
{
	return ts / 1000 + (int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY * 1000;
}

/*
 * Gives the message room for the event's own headers (headers: a JSON
 * object of strings or nulls, or NULL) plus ours more, and adds the
 * event's own.
 */
static void
eb_message_headers(EbRelayMessage *m, Jsonb *headers, int ours)
{
	int			max = ours + (headers ? JsonContainerSize(&headers->root) : 0);
	char	   *pending_name = NULL;
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;

	m->header_names = palloc(sizeof(char *) * max);
	m->header_values = palloc(sizeof(char *) * max);
	m->nheaders = 0;
	if (headers == NULL)
		return;
	it = JsonbIteratorInit(&headers->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
			pending_name = pnstrdup(v.val.string.val, v.val.string.len);
		else if (tok == WJB_VALUE && pending_name != NULL && m->nheaders < max - ours)
		{
			m->header_names[m->nheaders] = pending_name;
			m->header_values[m->nheaders] = v.type == jbvString ?
				pnstrdup(v.val.string.val, v.val.string.len) : NULL;
			m->nheaders++;
			pending_name = NULL;
		}
	}
}

/* Adds one of our headers; eb_message_headers() made room for it. */
static void
eb_message_header(EbRelayMessage *m, const char *name, const char *value)
{
	m->header_names[m->nheaders] = name;
	m->header_values[m->nheaders++] = value;
}

/* CloudEvents attributes set by the relay (binary content mode headers) */
#define EB_CE_HEADERS 7

/*
 * Is this header of the event one that must not reach Kafka on a
 * CloudEvents topic?  The attributes the relay sets (and
 * ce_datacontenttype, which binary mode carries as content-type) are its
 * own; a ce_ header that is not a legal attribute name (lowercase letters
 * and digits) would make the message malformed.  Other ce_ headers pass
 * as they are: they are optional or extension attributes (ce_subject).
 */
static bool
eb_ce_header_refused(const char *name)
{
	static const char *const ours[] = {
		"specversion", "id", "source", "type", "time", "dataschema",
		"datacontenttype"
	};
	const char *attr;
	int			i;

	if (pg_strcasecmp(name, "content-type") == 0)
		return true;
	if (pg_strncasecmp(name, "ce_", 3) != 0)
		return false;
	attr = name + 3;
	if (*attr == '\0')
		return true;
	for (i = 0; attr[i]; i++)
		if (!((attr[i] >= 'a' && attr[i] <= 'z') || (attr[i] >= '0' && attr[i] <= '9')))
			return true;
	for (i = 0; i < (int) lengthof(ours); i++)
		if (strcmp(attr, ours[i]) == 0)
			return true;
	return false;
}

/* RFC 3339 in UTC with microseconds: 2026-11-30T13:08:25.123456Z */
static char *
eb_rfc3339(TimestampTz ts)
{
	struct pg_tm tm;
	fsec_t		fsec;

	if (timestamp2tm(ts, NULL, &tm, &fsec, NULL, NULL) != 0)
		return pstrdup("1970-01-01T00:00:00.000000Z");
	return psprintf("%04d-%02d-%02dT%02d:%02d:%02d.%06dZ",
					tm.tm_year, tm.tm_mon, tm.tm_mday,
					tm.tm_hour, tm.tm_min, tm.tm_sec, (int) fsec);
}

/*
 * The message of an event of a CloudEvents topic (the CloudEvents Kafka
 * protocol binding, binary content mode): the value is the data, as it
 * is; the attributes are headers ce_specversion, ce_id (the event id),
 * ce_source, ce_type (the event's "type" header, else the topic),
 * ce_time (created_at), ce_dataschema (when the event carries
 * eventbus-schema-version) and content-type.  The event's own headers that
 * would clash with them are left out (logged at most once a minute).
 * eb_message_headers() made room for EB_CE_HEADERS more.
 */
static void
eb_cloudevents_headers(EbRelayMessage *m, EbRelayTarget *t, Jsonb *headers,
					   TimestampTz created_at, XLogRecPtr lsn)
{
	const char *type = t->topic;
	const char *version = NULL;
	int			kept = 0;
	int			dropped = 0;
	const char *dropped_name = NULL;
	int			i;

	for (i = 0; i < m->nheaders; i++)
	{
		const char *name = m->header_names[i];
		const char *value = m->header_values[i];

		if (strcmp(name, "type") == 0 && value != NULL && value[0] != '\0')
			type = value;
		else if (strcmp(name, "eventbus-schema-version") == 0 && value != NULL &&
				 value[0] != '\0' && strspn(value, "0123456789") == strlen(value))
			version = value;
		if (eb_ce_header_refused(name))
		{
			dropped++;
			dropped_name = name;
			continue;
		}
		m->header_names[kept] = name;
		m->header_values[kept] = value;
		kept++;
	}
	m->nheaders = kept;

	eb_message_header(m, "ce_specversion", "1.0");
	eb_message_header(m, "ce_id", m->event_id);
	eb_message_header(m, "ce_source", t->ce_source);
	eb_message_header(m, "ce_type", type);
	eb_message_header(m, "ce_time", eb_rfc3339(created_at));
	if (version != NULL)
	{
		StringInfoData buf;
		char	   *dbname = get_database_name(MyDatabaseId);

		initStringInfo(&buf);
		appendStringInfoString(&buf, "urn:pg-eventbus:schema:");
		eb_append_uri_encoded(&buf, dbname ? dbname : "");
		appendStringInfoChar(&buf, ':');
		eb_append_uri_encoded(&buf, t->topic);
		appendStringInfo(&buf, ":%s", version);
		eb_message_header(m, "ce_dataschema", buf.data);
	}
	eb_message_header(m, "content-type", "application/json");

	if (dropped > 0)
	{
		TimestampTz now = GetCurrentTimestamp();

		ce_dropped += dropped;
		if (ce_dropped_logged_at == 0 ||
			TimestampDifferenceExceeds(ce_dropped_logged_at, now, EB_SKIP_LOG_INTERVAL_MS))
		{
			ereport(WARNING,
					(errmsg("pg_eventbus relay: left out header \"%s\" of an event of topic \"%s\" at %X/%X, relayed as CloudEvents",
							dropped_name, t->topic, LSN_FORMAT_ARGS(lsn)),
					 errdetail("On a CloudEvents topic the relay sets content-type and the attributes ce_specversion, ce_id, ce_source, ce_type, ce_time, ce_dataschema and ce_datacontenttype; other ce_ headers must name an attribute in lowercase letters and digits.  %llu headers were left out since the relay started.",
							   (unsigned long long) ce_dropped)));
			ce_dropped_logged_at = now;
		}
	}
}

/*
 * The message's value: the JSON text of the event's jsonb (relay_json.c),
 * in a buffer sized for it up front (the text of a value without escapes
 * is rarely longer than its stored form).
 */
static void
eb_message_value(EbRelayMessage *m, Jsonb *value)
{
	StringInfoData buf;

	buf.maxlen = VARSIZE(value) + VARSIZE(value) / 4 + 64;
	buf.data = palloc(buf.maxlen);
	buf.len = 0;
	buf.data[0] = '\0';
	buf.cursor = 0;
	eb_json_append(&buf, value);
	m->value = buf.data;
	m->valuelen = buf.len;
}

/*
 * The eventbus-lsn header's value: a commit LSN as text.  Every event of a
 * transaction carries the same, so the last one is kept (the producer
 * copies header values: the buffer may change afterwards).
 */
static const char *
eb_lsn_text(XLogRecPtr lsn)
{
	static XLogRecPtr last_lsn = InvalidXLogRecPtr;
	static char text[2 * 8 + 2] = "0/0";

	if (lsn != last_lsn)
	{
		snprintf(text, sizeof(text), "%X/%X", LSN_FORMAT_ARGS(lsn));
		last_lsn = lsn;
	}
	return text;
}

/*
 * An event id as text, as uuid_out writes it (lower-case hex, 8-4-4-4-12),
 * without going through the function manager and a StringInfo per event.
 */
static char *
eb_uuid_text(const pg_uuid_t *uuid)
{
	static const char hex[] = "0123456789abcdef";
	char	   *buf = palloc(2 * UUID_LEN + 5);
	char	   *p = buf;
	int			i;

	for (i = 0; i < UUID_LEN; i++)
	{
		if (i == 4 || i == 6 || i == 8 || i == 10)
			*p++ = '-';
		*p++ = hex[uuid->data[i] >> 4];
		*p++ = hex[uuid->data[i] & 0x0f];
	}
	*p = '\0';
	return buf;
}

/*
 * The shared-memory slot of an event's partition (where its relayed
 * position is kept), NULL if it has none.  Looking it up takes the shared
 * map's lock, so the slots found are remembered in a small direct-mapped
 * cache; an entry is used only while the slot still belongs to the
 * partition (a slot can be freed and reused: the acknowledgement checks
 * the key again under the slot's lock, relay_ack.c).
 */
#define EB_PART_CACHE 256
static EbPartShared *
eb_relay_part(EbRelayTarget *t, int32 partition)
{
	static EbPartShared *cache[EB_PART_CACHE];
	EbPartShared **c = &cache[((uint64) t->uid * 31 + (uint32) partition) % EB_PART_CACHE];

	if (*c == NULL || !eb_part_key_matches(*c, MyDatabaseId, t->uid, partition))
		*c = eb_shared_part_slot(MyDatabaseId, t->uid, partition, false);
	return *c;
}

/* An integer header's value, in the change's memory context. */
static char *
eb_int_header(int64 v)
{
	char	   *buf = palloc(MAXINT8LEN + 1);

	pg_lltoa(v, buf);
	return buf;
}

/*
 * Builds the Kafka message of an event (values and nulls: a row of a
 * segment table, checked): value, key, timestamp, the event's own headers,
 * the CloudEvents attributes for a topic relayed as CloudEvents, and the
 * eventbus- headers (eventbus-lsn: lsn, the commit LSN; 0/0 for an event
 * sent from the topic's tables).  change_lsn: where a warning about left
 * out headers points.  Allocates in the current memory context.
 */
static void
eb_relay_event_message(EbRelayMessage *m, EbRelayTarget *t, Datum *values, bool *nulls,
					   XLogRecPtr lsn, XLogRecPtr change_lsn)
{
	Jsonb	   *value;
	Jsonb	   *headers = NULL;

	memset(m, 0, sizeof(*m));
	m->kafka_topic = t->kafka_topic;
	m->topic_id = t->topic_id;
	m->topic = t->topic;
	m->local_partitions = t->partitions;
	m->partition = DatumGetInt32(values[Anum_ev_partition - 1]);
	m->position = DatumGetInt64(values[Anum_ev_position - 1]);
	m->timestamp_ms = eb_timestamp_ms(DatumGetTimestampTz(values[Anum_ev_created_at - 1]));
	if (!nulls[Anum_ev_key - 1])
	{
		text	   *key = DatumGetTextPP(values[Anum_ev_key - 1]);

		m->key = VARDATA_ANY(key);
		m->keylen = VARSIZE_ANY_EXHDR(key);
	}
	value = DatumGetJsonbP(values[Anum_ev_value - 1]);
	eb_message_value(m, value);

	if (!nulls[Anum_ev_headers - 1])
		headers = DatumGetJsonbP(values[Anum_ev_headers - 1]);
	eb_message_headers(m, headers, t->cloudevents ? 5 + EB_CE_HEADERS : 5);
	m->event_id = eb_uuid_text(DatumGetUUIDP(values[Anum_ev_event_id - 1]));
	m->lsn = lsn;
	if (t->cloudevents)
		eb_cloudevents_headers(m, t, headers,
							   DatumGetTimestampTz(values[Anum_ev_created_at - 1]), change_lsn);
	eb_message_header(m, "eventbus-event-id", m->event_id);
	eb_message_header(m, "eventbus-topic", t->topic);
	eb_message_header(m, "eventbus-partition", eb_int_header(m->partition));
	eb_message_header(m, "eventbus-position", eb_int_header(m->position));
	eb_message_header(m, "eventbus-lsn", eb_lsn_text(lsn));
	m->part = eb_relay_part(t, m->partition);
	m->uid = t->uid;
}

static void
eb_output_change(LogicalDecodingContext *ctx, ReorderBufferTXN *txn,
				 Relation relation, ReorderBufferChange *change)
{
	EbRelayTarget *t;
	HeapTuple	tuple;
	Datum		values[Natts_ev];
	bool		nulls[Natts_ev];
	MemoryContext old;
	EbRelayMessage m;

	if (change->action != REORDER_BUFFER_CHANGE_INSERT ||
		change->data.tp.newtuple == NULL)
		return;

	/*
	 * Everything allocated for this change, the catalog lookups of a
	 * relation not yet cached included, goes into change_cxt, reset when
	 * the change is done: the caller's context lives as long as the
	 * decoding session.
	 */
	old = MemoryContextSwitchTo(change_cxt);
	t = eb_relay_target(relation);
	if (!t->relayed || t->skip[0] != '\0')
	{
		MemoryContextSwitchTo(old);
		MemoryContextReset(change_cxt);
		if (t->skip[0] != '\0')
			eb_relay_skip(change->lsn, t->skip);
		return;
	}
	tuple = eb_change_new_tuple(change);
	heap_deform_tuple(tuple, RelationGetDescr(relation), values, nulls);
	if (nulls[Anum_ev_partition - 1] || nulls[Anum_ev_position - 1] ||
		nulls[Anum_ev_event_id - 1] || nulls[Anum_ev_created_at - 1] ||
		nulls[Anum_ev_value - 1] ||
		DatumGetInt32(values[Anum_ev_partition - 1]) < 0 ||
		DatumGetInt32(values[Anum_ev_partition - 1]) >= t->partitions)
	{
		char		reason[EB_RELAY_ERROR_LEN];

		snprintf(reason, sizeof(reason),
				 "a row of segment table \"%s\" of topic \"%s\" is not an event (a NULL column or a partition out of range)",
				 RelationGetRelationName(relation), t->topic);
		MemoryContextSwitchTo(old);
		MemoryContextReset(change_cxt);
		eb_relay_skip(change->lsn, reason);
		return;
	}

	/* positions a backfill sends from the topic's tables (its seam) */
	if (eb_relay_writer(ctx)->skips(t->topic_id, DatumGetInt32(values[Anum_ev_partition - 1]),
							  DatumGetInt64(values[Anum_ev_position - 1])))
	{
		MemoryContextSwitchTo(old);
		MemoryContextReset(change_cxt);
		return;
	}
	eb_relay_event_message(&m, t, values, nulls, txn->final_lsn, change->lsn);
	eb_relay_writer(ctx)->send(&m);
	MemoryContextSwitchTo(old);
	MemoryContextReset(change_cxt);
}

/*
 * Reads a 4-byte length-prefixed field of an outbox message: false if the
 * message ends too early; *field is NULL and *len 0 for length -1.
 */
static bool
eb_outbox_field(const char **p, const char *end, const char **field, int32 *len)
{
	int32		l;

	if (end - *p < (ptrdiff_t) sizeof(int32))
		return false;
	memcpy(&l, *p, sizeof(int32));
	*p += sizeof(int32);
	*len = 0;
	*field = NULL;
	if (l == -1)
		return true;
	*len = l;
	if (l < 0 || end - *p < l)
		return false;
	*field = *p;
	*p += l;
	return true;
}

/* Compares two authentication codes in constant time. */
static bool
eb_mac_equal(const uint8 *a, const uint8 *b)
{
	uint8		diff = 0;
	int			i;

	for (i = 0; i < EB_OUTBOX_MAC_LEN; i++)
		diff |= a[i] ^ b[i];
	return diff == 0;
}

/*
 * Outbox messages: transactional logical messages written by
 * eventbus.outbox() (relay_sql.c describes their format).  Anyone can write
 * a logical message with our prefix: a message whose authentication code
 * does not verify with the database's relay key, or that is malformed, is
 * skipped.  Nothing here can throw on the message's content.
 */
static void
eb_output_message(LogicalDecodingContext *ctx, ReorderBufferTXN *txn,
				  XLogRecPtr message_lsn, bool transactional,
				  const char *prefix, Size message_size, const char *message)
{
	const char *p = message;
	const char *end = message + message_size;
	EbRelayMessage m;
	const char *field;
	int32		len;
	int64		created_at;
	pg_uuid_t	id;
	Oid			sender;
	Jsonb	   *headers = NULL;
	MemoryContext old;
	const char *bad = NULL;
	uint8		key[EB_RELAY_KEY_LEN];
	uint8		mac[EB_OUTBOX_MAC_LEN];

	if (!transactional || strcmp(prefix, EB_OUTBOX_PREFIX) != 0)
		return;
	if (message_size < 1 + EB_OUTBOX_MAC_LEN || message[0] != EB_OUTBOX_FORMAT)
	{
		eb_relay_skip(message_lsn, "an outbox message of unknown format");
		return;
	}
	/* the key lookup and the code's computation allocate: in change_cxt */
	old = MemoryContextSwitchTo(change_cxt);
	if (!eb_relay_key(key))
		bad = "an outbox message, but the database has no relay key (eventbus.relay_key)";
	else if (!eb_outbox_mac(key, message, message_size, mac) ||
			 !eb_mac_equal(mac, (const uint8 *) message + 1))
		bad = "an outbox message whose authentication code does not verify (not written by eventbus.outbox())";
	if (bad != NULL)
	{
		MemoryContextSwitchTo(old);
		MemoryContextReset(change_cxt);
		eb_relay_skip(message_lsn, bad);
		return;
	}

	p += 1 + EB_OUTBOX_MAC_LEN;
	memset(&m, 0, sizeof(m));
	m.outbox = true;
	m.topic_id = -1;
	m.partition = -1;
	m.local_partitions = -1;
	m.position = -1;
	if (end - p < (ptrdiff_t) sizeof(Oid))
		bad = "sender";
	else
	{
		memcpy(&sender, p, sizeof(Oid));
		p += sizeof(Oid);
	}
	if (bad == NULL && (!eb_outbox_field(&p, end, &field, &len) || field == NULL ||
						len > EB_KAFKA_TOPIC_MAX))
		bad = "Kafka topic";
	else if (bad == NULL)
	{
		m.kafka_topic = pnstrdup(field, len);
		if (!eb_kafka_topic_name_valid(m.kafka_topic))
			bad = "Kafka topic";
	}
	if (bad == NULL && !eb_outbox_field(&p, end, &m.key, &m.keylen))
		bad = "key";
	if (bad == NULL && end - p < (ptrdiff_t) (sizeof(id.data) + sizeof(int64)))
		bad = "event id";
	if (bad == NULL)
	{
		memcpy(id.data, p, sizeof(id.data));
		p += sizeof(id.data);
		memcpy(&created_at, p, sizeof(int64));
		p += sizeof(int64);
		m.timestamp_ms = eb_timestamp_ms(created_at);
		if (!eb_outbox_field(&p, end, &field, &len))
			bad = "headers";
		else if (field != NULL)
		{
			/* a jsonb datum with a 4-byte header, copied to be aligned */
			if (len < (int32) (VARHDRSZ + sizeof(uint32)))
				bad = "headers";
			else
			{
				headers = palloc(len);
				memcpy(headers, field, len);
				if (!VARATT_IS_4B_U(headers) || VARSIZE(headers) != (Size) len)
					bad = "headers";
			}
		}
	}
	if (bad == NULL && (!eb_outbox_field(&p, end, &field, &len) || field == NULL))
		bad = "value";
	if (bad == NULL && p != end)
		bad = "length";
	if (bad == NULL && !eb_relay_sender_allowed(sender, m.kafka_topic))
	{
		char		reason[EB_RELAY_ERROR_LEN];

		snprintf(reason, sizeof(reason),
				 "an outbox message of a role that is not allowed to send to Kafka topic \"%s\" (see eventbus.allow_relay())",
				 m.kafka_topic);
		MemoryContextSwitchTo(old);
		MemoryContextReset(change_cxt);
		eb_relay_skip(message_lsn, reason);
		return;
	}
	if (bad != NULL)
	{
		char		reason[EB_RELAY_ERROR_LEN];

		snprintf(reason, sizeof(reason), "a malformed outbox message (its %s)", bad);
		MemoryContextSwitchTo(old);
		MemoryContextReset(change_cxt);
		eb_relay_skip(message_lsn, reason);
		return;
	}
	m.value = field;
	m.valuelen = len;

	eb_message_headers(&m, headers, 2);
	m.event_id = eb_uuid_text(&id);
	m.lsn = txn->final_lsn;
	eb_message_header(&m, "eventbus-event-id", m.event_id);
	eb_message_header(&m, "eventbus-lsn", eb_lsn_text(txn->final_lsn));

	eb_relay_writer(ctx)->send(&m);
	MemoryContextSwitchTo(old);
	MemoryContextReset(change_cxt);
}

/* ---------- events sent from the topic's tables (a backfill) ---------- */

/*
 * The relay target of a topic as it is now (the current catalog snapshot,
 * not cached: the cache serves decoding, whose snapshot is historic), for
 * sending stored events; NULL with the reason in why when the topic is not
 * relayed or its events cannot be.  Allocated in the current memory
 * context.
 */
EbRelayTarget *
eb_relay_stored_target(int32 topic_id, char *why, size_t whylen)
{
	EbRelayTarget *t = palloc0(sizeof(EbRelayTarget));

	t->partitions = -1;
	t->topic_id = topic_id;
	eb_relay_lookup(topic_id, t);
	why[0] = '\0';
	if (!t->relayed)
		snprintf(why, whylen, "the topic is not relayed");
	else if (!eb_kafka_topic_name_valid(t->kafka_topic))
		snprintf(why, whylen, "topic \"%s\" is relayed to an invalid Kafka topic name", t->topic);
	else if (!OidIsValid(t->owner) || !eb_relay_allowed(t->owner, t->kafka_topic, NULL))
		snprintf(why, whylen,
				 "the owner of topic \"%s\" is not allowed to relay into Kafka topic \"%s\" (see eventbus.allow_relay())",
				 t->topic, t->kafka_topic);
	if (why[0] != '\0')
	{
		pfree(t);
		return NULL;
	}
	eb_relay_format_lookup(topic_id, t);
	return t;
}

/*
 * The shared slot of a partition of the target's topic, as its messages
 * carry it (NULL for a partition the topic does not have), and the topic's
 * uid, which the slot must still match when a count is applied.
 */
EbPartShared *
eb_relay_target_part(EbRelayTarget *t, int32 partition, int64 *uid)
{
	*uid = t->uid;
	if (partition < 0 || partition >= t->partitions)
		return NULL;
	return eb_relay_part(t, partition);
}

/*
 * Builds the message of a stored event of the target's topic (a row of one
 * of its segment tables, read by OID) as a decoded one's: the same value,
 * headers (eventbus-lsn 0/0: the commit LSN is not known) and Kafka
 * partition; the caller (relay_backfill.c) sends it.  A row that is not an
 * event is skipped and counted, and false returned.
 */
bool
eb_relay_stored_message(EbRelayTarget *t, TupleTableSlot *slot, EbRelayMessage *m)
{
	Datum	   *values;
	bool	   *nulls;

	slot_getallattrs(slot);
	values = slot->tts_values;
	nulls = slot->tts_isnull;
	if (!eb_relay_columns_ok(slot->tts_tupleDescriptor) ||
		nulls[Anum_ev_partition - 1] || nulls[Anum_ev_position - 1] ||
		nulls[Anum_ev_event_id - 1] || nulls[Anum_ev_created_at - 1] ||
		nulls[Anum_ev_value - 1] ||
		DatumGetInt32(values[Anum_ev_partition - 1]) < 0 ||
		DatumGetInt32(values[Anum_ev_partition - 1]) >= t->partitions)
	{
		char		reason[EB_RELAY_ERROR_LEN];

		snprintf(reason, sizeof(reason),
				 "a stored row of topic \"%s\" is not an event (other columns, a NULL column or a partition out of range)",
				 t->topic);
		eb_relay_skip(InvalidXLogRecPtr, reason);
		return false;
	}
	eb_relay_event_message(m, t, values, nulls, InvalidXLogRecPtr, InvalidXLogRecPtr);
	return true;
}

void
_PG_output_plugin_init(OutputPluginCallbacks *cb)
{
	EB_ASSERT_VARIABLE_IS_OF_TYPE(&_PG_output_plugin_init, LogicalOutputPluginInit);

	cb->startup_cb = eb_output_startup;
	cb->begin_cb = eb_output_begin;
	cb->change_cb = eb_output_change;
	cb->commit_cb = eb_output_commit;
	cb->message_cb = eb_output_message;
	cb->shutdown_cb = eb_output_shutdown;
}
