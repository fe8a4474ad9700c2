/*-------------------------------------------------------------------------
 *
 * relay_output.c
 *	  The logical decoding output plugin of the Kafka relay.
 *
 * The relay worker decodes WAL in its own process with this library as the
 * output plugin of its slot.  The callbacks turn committed rows of relayed
 * topics' segment tables, and outbox messages, into EbRelayMessages and hand
 * them to the worker (relay_worker.c), transaction by transaction in commit
 * order.  They never write to the database.
 *
 * Whether a segment table is relayed, and where to, comes from
 * eventbus.topic, a catalog table for logical decoding
 * (user_catalog_table), read with the historic snapshot of the transaction
 * being decoded: a topic is relayed exactly from the transaction that
 * called relay_topic() on.  Lookups are cached per relation; relay_topic()
 * and stop_relay() invalidate eventbus.topic's relcache entry, which the
 * decoding replays at the right point and which empties the cache.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
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
#include "utils/uuid.h"

#include "pg_eventbus.h"
#include "relay.h"
#include "shmem.h"

extern PGDLLEXPORT void _PG_output_plugin_init(OutputPluginCallbacks *cb);

typedef struct EbRelayTarget
{
	Oid			relid;			/* hash key */
	bool		relayed;
	char		topic[NAMEDATALEN];
	char		kafka_topic[EB_KAFKA_TOPIC_MAX + 1];
	int32		partitions;
	int64		uid;
} EbRelayTarget;

static HTAB *targets = NULL;
static Oid	topic_catalog_relid = InvalidOid;
static MemoryContext change_cxt = NULL;
static bool callback_registered = false;

/*
 * Relcache invalidation: a change of eventbus.topic (relay_topic() and
 * stop_relay() send one) may change any entry; otherwise forget the
 * relation's entry.  No catalog access here.
 */
static void
eb_relay_invalidate(Datum arg, Oid relid)
{
	if (targets == NULL)
		return;
	if (relid == InvalidOid || relid == topic_catalog_relid)
	{
		hash_destroy(targets);
		targets = NULL;
	}
	else
		(void) hash_search(targets, &relid, HASH_REMOVE, NULL);
}

/* Forget cached lookups (between decoding sessions). */
void
eb_relay_output_reset(void)
{
	if (targets != NULL)
		hash_destroy(targets);
	targets = NULL;
}

/*
 * Reads the topic's row of eventbus.topic with the historic snapshot.
 */
static void
eb_relay_lookup(const char *topic, EbRelayTarget *t)
{
	Oid			nsp = get_namespace_oid(EB_SCHEMA, true);
	Oid			relid = OidIsValid(nsp) ? get_relname_relid("topic", nsp) : InvalidOid;
	Relation	rel;
	SysScanDesc scan;
	HeapTuple	tup;
	AttrNumber	att_topic,
				att_relay,
				att_partitions,
				att_uid;

	t->relayed = false;
	if (!OidIsValid(relid))
		return;
	topic_catalog_relid = relid;
	att_topic = get_attnum(relid, "topic");
	att_relay = get_attnum(relid, "relay_to");
	att_partitions = get_attnum(relid, "partitions");
	att_uid = get_attnum(relid, "uid");
	if (att_topic == InvalidAttrNumber || att_relay == InvalidAttrNumber)
		return;

	rel = table_open(relid, AccessShareLock);
	scan = systable_beginscan(rel, InvalidOid, false, NULL, 0, NULL);
	while ((tup = systable_getnext(scan)) != NULL)
	{
		bool		isnull;
		Datum		d = heap_getattr(tup, att_topic, RelationGetDescr(rel), &isnull);

		if (isnull || strcmp(TextDatumGetCString(d), topic) != 0)
			continue;
		d = heap_getattr(tup, att_relay, RelationGetDescr(rel), &isnull);
		if (!isnull)
		{
			t->relayed = true;
			strlcpy(t->kafka_topic, TextDatumGetCString(d), sizeof(t->kafka_topic));
			t->partitions = DatumGetInt32(heap_getattr(tup, att_partitions,
													   RelationGetDescr(rel), &isnull));
			t->uid = DatumGetInt64(heap_getattr(tup, att_uid,
												RelationGetDescr(rel), &isnull));
		}
		break;
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
}

/*
 * Is this relation a segment table of a relayed topic?  Segment tables
 * are eventbus_data."<topic>$<n>".  Fills *out; the cache entry is written
 * only after the lookup, which may process invalidations.
 */
static bool
eb_relay_target(Relation rel, EbRelayTarget *out)
{
	Oid			relid = RelationGetRelid(rel);
	EbRelayTarget *t;
	const char *relname;
	const char *dollar;
	Oid			datansp;

	if (targets != NULL &&
		(t = hash_search(targets, &relid, HASH_FIND, NULL)) != NULL)
	{
		*out = *t;
		return out->relayed;
	}

	memset(out, 0, sizeof(*out));
	out->relid = relid;
	out->partitions = -1;
	relname = RelationGetRelationName(rel);
	dollar = strrchr(relname, '$');
	datansp = get_namespace_oid(EB_DATA_SCHEMA, true);
	if (dollar != NULL && OidIsValid(datansp) && RelationGetNamespace(rel) == datansp &&
		dollar - relname < NAMEDATALEN)
	{
		memcpy(out->topic, relname, dollar - relname);
		out->topic[dollar - relname] = '\0';
		eb_relay_lookup(out->topic, out);
	}

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
	*t = *out;
	return out->relayed;
}

static void
eb_output_startup(LogicalDecodingContext *ctx, OutputPluginOptions *opt, bool is_init)
{
	opt->output_type = OUTPUT_PLUGIN_BINARY_OUTPUT;
	if (!is_init && !eb_relay_session_active())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the pg_eventbus output plugin only serves the pg_eventbus relay worker")));
	if (!callback_registered)
	{
		CacheRegisterRelcacheCallback(eb_relay_invalidate, (Datum) 0);
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
	eb_relay_txn_begin();
}

static void
eb_output_commit(LogicalDecodingContext *ctx, ReorderBufferTXN *txn, XLogRecPtr commit_lsn)
{
	eb_relay_txn_commit(txn->end_lsn, txn->xact_time.commit_time);
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

/* The eventbus-lsn header's value: the transaction's commit LSN. */
static char *
eb_lsn_header(ReorderBufferTXN *txn)
{
	return psprintf("%X/%X", LSN_FORMAT_ARGS(txn->final_lsn));
}

static void
eb_output_change(LogicalDecodingContext *ctx, ReorderBufferTXN *txn,
				 Relation relation, ReorderBufferChange *change)
{
	EbRelayTarget target;
	EbRelayTarget *t = &target;
	HeapTuple	tuple;
	Datum		values[Natts_ev];
	bool		nulls[Natts_ev];
	MemoryContext old;
	EbRelayMessage m;
	Jsonb	   *value;
	Jsonb	   *headers = NULL;

	if (change->action != REORDER_BUFFER_CHANGE_INSERT ||
		change->data.tp.newtuple == NULL)
		return;
	if (!eb_relay_target(relation, &target))
		return;
	if (RelationGetDescr(relation)->natts < Natts_ev)
		return;

	old = MemoryContextSwitchTo(change_cxt);
	tuple = &change->data.tp.newtuple->tuple;
	heap_deform_tuple(tuple, RelationGetDescr(relation), values, nulls);

	memset(&m, 0, sizeof(m));
	m.kafka_topic = t->kafka_topic;
	m.local_partitions = t->partitions;
	m.partition = DatumGetInt32(values[Anum_ev_partition - 1]);
	m.position = DatumGetInt64(values[Anum_ev_position - 1]);
	m.timestamp_ms = eb_timestamp_ms(DatumGetTimestampTz(values[Anum_ev_created_at - 1]));
	if (!nulls[Anum_ev_key - 1])
	{
		text	   *key = DatumGetTextPP(values[Anum_ev_key - 1]);

		m.key = VARDATA_ANY(key);
		m.keylen = VARSIZE_ANY_EXHDR(key);
	}
	value = DatumGetJsonbP(values[Anum_ev_value - 1]);
	m.value = JsonbToCString(NULL, &value->root, VARSIZE(value));
	m.valuelen = strlen(m.value);

	if (!nulls[Anum_ev_headers - 1])
		headers = DatumGetJsonbP(values[Anum_ev_headers - 1]);
	eb_message_headers(&m, headers, 5);
	eb_message_header(&m, "eventbus-event-id",
					  DatumGetCString(DirectFunctionCall1(uuid_out, values[Anum_ev_event_id - 1])));
	eb_message_header(&m, "eventbus-topic", t->topic);
	eb_message_header(&m, "eventbus-partition", psprintf("%d", m.partition));
	eb_message_header(&m, "eventbus-position", psprintf(INT64_FORMAT, m.position));
	eb_message_header(&m, "eventbus-lsn", eb_lsn_header(txn));
	m.part = eb_part_shared(MyDatabaseId, t->uid, m.partition, false);

	eb_relay_send(&m);
	MemoryContextSwitchTo(old);
	MemoryContextReset(change_cxt);
}

/* Reads a 4-byte length-prefixed field of an outbox message. */
static const char *
eb_outbox_field(const char **p, const char *end, int32 *len)
{
	int32		l;
	const char *field;

	if (end - *p < (ptrdiff_t) sizeof(int32))
		return NULL;
	memcpy(&l, *p, sizeof(int32));
	*p += sizeof(int32);
	*len = l;
	if (l < 0)
		return NULL;
	if (end - *p < l)
		elog(ERROR, "corrupt outbox message");
	field = *p;
	*p += l;
	return field;
}

/*
 * Outbox messages: transactional logical messages written by
 * eventbus.outbox() (relay_sql.c describes their format).
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
	Jsonb	   *headers = NULL;
	MemoryContext old;

	if (!transactional || strcmp(prefix, EB_OUTBOX_PREFIX) != 0)
		return;
	if (message_size < 1 || message[0] != EB_OUTBOX_FORMAT)
		elog(ERROR, "outbox message of unknown format");

	old = MemoryContextSwitchTo(change_cxt);
	p++;
	memset(&m, 0, sizeof(m));
	m.outbox = true;
	m.partition = -1;
	m.local_partitions = -1;
	m.position = -1;
	field = eb_outbox_field(&p, end, &len);
	if (field == NULL)
		elog(ERROR, "corrupt outbox message");
	m.kafka_topic = pnstrdup(field, len);
	field = eb_outbox_field(&p, end, &len);
	if (field != NULL)
	{
		m.key = field;
		m.keylen = len;
	}
	if (end - p < (ptrdiff_t) (sizeof(id.data) + sizeof(int64)))
		elog(ERROR, "corrupt outbox message");
	memcpy(id.data, p, sizeof(id.data));
	p += sizeof(id.data);
	memcpy(&created_at, p, sizeof(int64));
	p += sizeof(int64);
	m.timestamp_ms = eb_timestamp_ms(created_at);
	field = eb_outbox_field(&p, end, &len);
	if (field != NULL)
		headers = DatumGetJsonbP(DirectFunctionCall1(jsonb_in,
													 CStringGetDatum(pnstrdup(field, len))));
	field = eb_outbox_field(&p, end, &len);
	if (field == NULL)
		elog(ERROR, "corrupt outbox message");
	m.value = field;
	m.valuelen = len;

	eb_message_headers(&m, headers, 2);
	eb_message_header(&m, "eventbus-event-id",
					  DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(&id))));
	eb_message_header(&m, "eventbus-lsn", eb_lsn_header(txn));

	eb_relay_send(&m);
	MemoryContextSwitchTo(old);
	MemoryContextReset(change_cxt);
}

void
_PG_output_plugin_init(OutputPluginCallbacks *cb)
{
	AssertVariableIsOfType(&_PG_output_plugin_init, LogicalOutputPluginInit);

	cb->startup_cb = eb_output_startup;
	cb->begin_cb = eb_output_begin;
	cb->change_cb = eb_output_change;
	cb->commit_cb = eb_output_commit;
	cb->message_cb = eb_output_message;
	cb->shutdown_cb = eb_output_shutdown;
}
