/*-------------------------------------------------------------------------
 *
 * publish.c
 *	  eventbus.publish() and eventbus.publish_batch().
 *
 * Events are inserted straight into the topic's current segment table with
 * the heap and index access methods, as the caller and in the caller's
 * transaction: they exist if and only if it commits.  Only the segment's
 * own two indexes are written, with values built here; a segment with any
 * other index, a trigger, a rule, row security or a CHECK constraint is
 * refused rather than half-maintained (segment tables belong to the
 * extension owner, so only a superuser could have added one).  Nothing on this path updates or deletes
 * a row, and no lock is held until commit, so producers of one partition
 * never wait for each other (see position.c).
 *
 * An idempotency key is checked under a transaction-scoped lock on
 * (topic, hash of the key), so two transactions publishing the same key
 * take turns: the second sees the first's row if it committed.  Keys live
 * in the segment rows themselves and expire with them.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/nbtree.h"
#include "access/transam.h"
#include "access/heapam.h"
#include "access/relation.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/detoast.h"
#include "access/xact.h"
#include "catalog/index.h"
#include "catalog/pg_am.h"
#include "catalog/pg_class.h"
#include "catalog/pg_index.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "common/pg_prng.h"
#include "executor/executor.h"
#include "executor/tuptable.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/execnodes.h"
#include "nodes/makefuncs.h"
#include "nodes/primnodes.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"
#include "utils/uuid.h"

#include "settings.h"
#include "stats.h"
#include "compat.h"
#include "catalog.h"
#include "notify.h"
#include "position.h"
#include "publish.h"
#include "relay.h"
#include "relay_json.h"
#include "read.h"
#include "trace.h"
#include "schema.h"
#include "util.h"

PG_FUNCTION_INFO_V1(eb_publish);
PG_FUNCTION_INFO_V1(eb_publish_batch);
PG_FUNCTION_INFO_V1(eb_partition_for_key);

/* Lock tag field 4 for idempotency locks; user advisory locks use 1 and 2. */
#define EB_IDEMPOTENCY_LOCK_CLASS 3

#define EB_RESERVED_HEADER_PREFIX "eventbus-"

/* A segment's own two indexes, and a copy of each during a reindex */
#define EB_MAX_SEGMENT_INDEXES 4

typedef struct EbEvent
{
	Datum		value;
	text	   *key;			/* NULL if none */
	Jsonb	   *headers;		/* NULL if none */
	text	   *idem;			/* NULL if none */
	int32		partition;
	int64		position;
	bool		size_by_mapping;	/* its size check depends on the topic's
									 * relay mapping: checked again under the
									 * publish lock (eb_publish_group) */
} EbEvent;

/* set when the current transaction published; read at commit */
bool		eb_xact_published = false;

static uint32 rr_next = 0;
static bool rr_seeded = false;

/* Checks that a headers value is an object of string (or null) values. */
void
eb_check_headers(Jsonb *headers)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	int			level = 0;

	if (!JB_ROOT_IS_OBJECT(headers) || JB_ROOT_IS_SCALAR(headers))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("headers must be a JSON object"),
				 errdetail("Each header is a key with a string value, for example {\"trace-id\": \"abc\"}.")));

	it = JsonbIteratorInit(&headers->root);
	while ((tok = JsonbIteratorNext(&it, &v, false)) != WJB_DONE)
	{
		if (tok == WJB_BEGIN_OBJECT || tok == WJB_BEGIN_ARRAY)
		{
			level++;
			if (level > 1)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("header values must be strings or null"),
						 errdetail("Nested objects and arrays cannot be sent as Kafka headers.")));
		}
		else if (tok == WJB_END_OBJECT || tok == WJB_END_ARRAY)
			level--;
		else if (tok == WJB_KEY)
		{
			if (v.val.string.len >= (int) strlen(EB_RESERVED_HEADER_PREFIX) &&
				pg_strncasecmp(v.val.string.val, EB_RESERVED_HEADER_PREFIX,
							   strlen(EB_RESERVED_HEADER_PREFIX)) == 0)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("header name \"%.*s\" is reserved",
								v.val.string.len, v.val.string.val),
						 errdetail("Headers starting with \"%s\" are added by pg_eventbus.",
								   EB_RESERVED_HEADER_PREFIX)));
		}
		else if (tok == WJB_VALUE)
		{
			if (v.type != jbvString && v.type != jbvNull)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("header values must be strings or null")));
		}
	}
}

/* Value, key and headers together must fit eventbus.max_event_size. */
void
eb_check_size(Datum value, text *key, Jsonb *headers)
{
	Size		size = toast_raw_datum_size(value) - VARHDRSZ;

	if (key)
		size += VARSIZE_ANY_EXHDR(key);
	if (headers)
		size += VARSIZE(headers) - VARHDRSZ;
	if (size > (Size) eb_max_event_size)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("event of %zu bytes exceeds eventbus.max_event_size (%d bytes)",
						size, eb_max_event_size),
				 errhint("Store large payloads elsewhere and publish a reference, or raise eventbus.max_event_size.")));
}

/*
 * The size of an event of a relayed topic as the relay sends it to Kafka
 * (relay_output.c): the key, the value as JSON text (relay_json.c) and the
 * headers' names and values, the event's own and the relay's.  Computed
 * only when a cheap upper bound says it might exceed eventbus.max_event_size
 * (strings counted at six bytes a byte, the most escaping makes of one, and
 * the widest headers); only then is the topic's relay mapping looked up.
 * An event that could never be sent would make the relay apply the topic's
 * on_error policy to it (and stop every topic, with 'stop'): publish
 * refuses it instead.
 */

/* ce_specversion, ce_id, ce_source, ce_type, ce_time, content-type (values
 * of ce_source and ce_type not counted) */
#define EB_CE_HEADERS_SIZE \
	((14 + 3) + (5 + 36) + 9 + 7 + (7 + 27) + (12 + 16))

/* Bytes of s percent-encoded as the relay's URIs are. */
static Size
eb_uri_encoded_len(const char *s)
{
	Size		n = 0;

	for (; *s; s++)
	{
		unsigned char c = (unsigned char) *s;

		n += ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			  (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' || c == '~') ? 1 : 3;
	}
	return n;
}

/*
 * Is the topic relayed (eventbus.topic.relay_to set)?  Then *kafka_topic is
 * its Kafka topic, *cloudevents its format and source its ce_source (NULL
 * for the default).  Reads the catalogs with the statement's snapshot, which
 * sees what this transaction changed before (relay_topic() in it), or with
 * latest with a new one, which also sees what committed since (a
 * relay_topic() this publish waited for).
 */
static bool
eb_relay_mapping(int32 topic_id, char **kafka_topic, bool *cloudevents, char **source,
				 bool latest)
{
	Snapshot	snap = latest ? RegisterSnapshot(GetLatestSnapshot()) :
		(ActiveSnapshotSet() ? GetActiveSnapshot() : NULL);
	const char *tables[2] = {"topic", "relay_format"};
	bool		relayed = false;
	int			t;

	*kafka_topic = NULL;
	*cloudevents = false;
	*source = NULL;
	for (t = 0; t < 2 && (t == 0 || relayed); t++)
	{
		Oid			relid = eb_catalog_relid(tables[t]);
		AttrNumber	att_id,
					att_a,
					att_b;
		Relation	rel;
		SysScanDesc scan;
		HeapTuple	tup;

		if (!OidIsValid(relid))
			break;
		att_id = get_attnum(relid, "topic_id");
		att_a = get_attnum(relid, t == 0 ? "relay_to" : "format");
		att_b = t == 0 ? InvalidAttrNumber : get_attnum(relid, "cloudevents_source");
		if (att_id == InvalidAttrNumber || att_a == InvalidAttrNumber)
			break;
		rel = table_open(relid, AccessShareLock);
		scan = systable_beginscan(rel, InvalidOid, false, snap, 0, NULL);
		while ((tup = systable_getnext(scan)) != NULL)
		{
			TupleDesc	desc = RelationGetDescr(rel);
			bool		isnull;
			Datum		d = heap_getattr(tup, att_id, desc, &isnull);

			if (isnull || DatumGetInt32(d) != topic_id)
				continue;
			d = heap_getattr(tup, att_a, desc, &isnull);
			if (t == 0 && !isnull)
			{
				relayed = true;
				*kafka_topic = TextDatumGetCString(d);
			}
			else if (t == 1 && !isnull)
			{
				*cloudevents = strcmp(TextDatumGetCString(d), "cloudevents") == 0;
				if (att_b != InvalidAttrNumber)
				{
					d = heap_getattr(tup, att_b, desc, &isnull);
					if (!isnull)
						*source = TextDatumGetCString(d);
				}
			}
			break;
		}
		systable_endscan(scan);
		table_close(rel, AccessShareLock);
	}
	if (latest)
		UnregisterSnapshot(snap);
	return relayed;
}

/*
 * Bytes of an event's own headers as the relay sends them: their names and
 * string values.  *type_len and *version_len, if given, receive the length
 * of the "type" and "eventbus-schema-version" values (0 if absent).
 */
Size
eb_headers_sent_size(Jsonb *headers, Size *type_len, Size *version_len)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	bool		is_type = false;
	bool		is_version = false;
	Size		own = 0;

	if (type_len)
		*type_len = 0;
	if (version_len)
		*version_len = 0;
	if (headers == NULL)
		return 0;
	it = JsonbIteratorInit(&headers->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
		{
			own += v.val.string.len;
			is_type = v.val.string.len == 4 &&
				memcmp(v.val.string.val, "type", 4) == 0;
			is_version = v.val.string.len == 23 &&
				memcmp(v.val.string.val, "eventbus-schema-version", 23) == 0;
		}
		else if (tok == WJB_VALUE && v.type == jbvString)
		{
			own += v.val.string.len;
			if (is_type && type_len)
				*type_len = v.val.string.len;
			if (is_version && version_len)
				*version_len = v.val.string.len;
		}
	}
	return own;
}

/*
 * eb_check_size(), and for a relayed topic the event's size as the relay
 * sends it.  True if that check depended on whether the topic is relayed:
 * the caller checks again under the publish lock (eb_publish_group).
 */
bool
eb_check_event_size(EbTopic *topic, Datum value, text *key, Jsonb *headers)
{
	eb_check_size(value, key, headers);
	return eb_check_relayed_size(topic, value, key, headers, false);
}

/*
 * For a relayed topic, refuses an event whose size as the relay sends it
 * exceeds eventbus.max_event_size: Kafka would refuse it, and the topic's
 * relaying would stop there (or send it to eventbus.relay_dead_letter).
 */
bool
eb_check_relayed_size(EbTopic *topic, Datum value, text *key, Jsonb *headers,
					  bool latest)
{
	Jsonb	   *jb;
	Size		own = 0;
	Size		type_len = 0;
	Size		version_len = 0;
	Size		fixed;
	uint64		bound;
	uint64		sent;
	char	   *kafka_topic;
	char	   *source;
	bool		cloudevents;
	char	   *dbname;
	bool		by_mapping;

	own = eb_headers_sent_size(headers, &type_len, &version_len);
	fixed = (key ? VARSIZE_ANY_EXHDR(key) : 0) + own +
		EB_RELAY_HEADERS_SIZE + strlen(topic->name);

	/* the widest CloudEvents headers: ce_source, ce_type, ce_dataschema */
	jb = DatumGetJsonbP(value);
	bound = eb_json_length_bound(jb) + fixed + EB_CE_HEADERS_SIZE +
		EB_CE_SOURCE_MAX + Max(type_len, strlen(topic->name)) +
		(version_len ? 13 + 25 + 3 * 2 * NAMEDATALEN + version_len : 0);
	by_mapping = bound > (uint64) eb_max_event_size;
	if (!by_mapping ||
		!eb_relay_mapping(topic->topic_id, &kafka_topic, &cloudevents, &source, latest))
	{
		/* a detoasted copy: publish_batch checks many events in one call */
		if ((void *) jb != (void *) DatumGetPointer(value))
			pfree(jb);
		return by_mapping;
	}

	sent = eb_json_length(jb) + fixed;
	if (cloudevents)
	{
		dbname = get_database_name(MyDatabaseId);
		sent += EB_CE_HEADERS_SIZE + Max(type_len, strlen(topic->name));
		if (source != NULL && source[0] != '\0')
			sent += strlen(source);
		else
			sent += strlen("/postgresql/") + eb_uri_encoded_len(dbname ? dbname : "") +
				1 + eb_uri_encoded_len(topic->name);
		/* urn:pg-eventbus:schema:<database>:<topic>:<version> */
		if (version_len)
			sent += 13 + strlen("urn:pg-eventbus:schema:") +
				eb_uri_encoded_len(dbname ? dbname : "") + 1 +
				eb_uri_encoded_len(topic->name) + 1 + version_len;
	}
	if (sent > (uint64) eb_max_event_size)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("event of %llu bytes as relayed to Kafka exceeds eventbus.max_event_size (%d bytes)",
						(unsigned long long) sent, eb_max_event_size),
				 errdetail("Topic \"%s\" is relayed to Kafka topic \"%s\": the relay sends the value as JSON text (%llu bytes; %zu bytes as stored), with the key and the headers%s.",
						   topic->name, kafka_topic,
						   (unsigned long long) eb_json_length(jb),
						   toast_raw_datum_size(value) - VARHDRSZ,
						   cloudevents ? " and the CloudEvents attributes" : ""),
				 errhint("Store large payloads elsewhere and publish a reference; control characters in strings take six bytes each as JSON text.")));
	return true;
}

static int32
eb_next_round_robin(int32 partitions)
{
	if (!rr_seeded)
	{
		rr_next = pg_prng_uint32(&pg_global_prng_state);
		rr_seeded = true;
	}
	return (int32) (rr_next++ % (uint32) partitions);
}

static void
eb_check_publish_privilege(EbTopic *topic)
{
	if (pg_class_aclcheck(topic->relid, GetUserId(), ACL_INSERT) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to publish to topic \"%s\"", topic->name),
				 errhint("The topic owner can grant it with: GRANT INSERT ON %s.%s TO role;",
						 EB_DATA_SCHEMA, quote_identifier(topic->name))));
}

/* The indexes of a segment that publishing writes to. */
typedef struct EbPublishIndexes
{
	int			n;
	Relation	idx[EB_MAX_SEGMENT_INDEXES];
	IndexInfo  *info[EB_MAX_SEGMENT_INDEXES];
	bool		is_idem[EB_MAX_SEGMENT_INDEXES];
} EbPublishIndexes;

static void
eb_refuse_segment(Relation rel, const char *what, const char *name)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("cannot publish to segment table %s.%s: it has %s%s%s%s",
					EB_DATA_SCHEMA, quote_identifier(RelationGetRelationName(rel)),
					what, name ? " \"" : "", name ? name : "", name ? "\"" : ""),
			 errdetail("Publishing writes a segment's rows and its two own indexes only; anything else on a segment table would be silently ignored."),
			 errhint("Remove it from the segment table; only a superuser can have added it.")));
}

/* Is the index's predicate exactly "idempotency_key IS NOT NULL"? */
static bool
eb_is_idem_predicate(HeapTuple indtup)
{
	bool		isnull;
	Datum		d = SysCacheGetAttr(INDEXRELID, indtup, Anum_pg_index_indpred, &isnull);
	Node	   *pred;
	NullTest   *nt;

	if (isnull)
		return false;
	pred = stringToNode(TextDatumGetCString(d));
	if (IsA(pred, List))
	{
		if (list_length((List *) pred) != 1)
			return false;
		pred = linitial((List *) pred);
	}
	if (!IsA(pred, NullTest))
		return false;
	nt = (NullTest *) pred;
	return nt->nulltesttype == IS_NOT_NULL && !nt->argisrow &&
		nt->arg != NULL && IsA(nt->arg, Var) &&
		((Var *) nt->arg)->varattno == Anum_ev_idempotency_key;
}

/*
 * The indexes of segments this backend published to, as validated by
 * eb_segment_index_set: their OIDs and which of the two each is.  What is
 * cached cannot change without a relcache invalidation of the segment
 * table, which drops its entry: its columns (ALTER TABLE), its list of
 * indexes (CREATE INDEX, DROP INDEX, REINDEX CONCURRENTLY's copies) and
 * what each index is (an index's keys, predicate, uniqueness, access
 * method and operator families never change under its OID).  Whether an
 * index is ready for inserts can change without one: it is read from the
 * index's own relcache entry at every publish, as core's executor does.
 */
#define EB_MAX_SEGMENT_INDEX_SET 16
typedef struct EbSegmentIndexSet
{
	Oid			relid;			/* hash key: the segment table */
	int			n;
	Oid			oid[EB_MAX_SEGMENT_INDEX_SET];
	bool		is_idem[EB_MAX_SEGMENT_INDEX_SET];
} EbSegmentIndexSet;

static HTAB *segment_index_sets = NULL;

static void
eb_segment_index_sets_invalidate(Datum arg, Oid relid)
{
	HASH_SEQ_STATUS seq;
	EbSegmentIndexSet *e;

	if (segment_index_sets == NULL)
		return;
	if (OidIsValid(relid))
	{
		(void) hash_search(segment_index_sets, &relid, HASH_REMOVE, NULL);
		return;
	}
	hash_seq_init(&seq, segment_index_sets);
	while ((e = hash_seq_search(&seq)) != NULL)
		(void) hash_search(segment_index_sets, &e->relid, HASH_REMOVE, NULL);
}

/*
 * Is the index a built-in btree whose key columns all use built-in operator
 * families?  Anything else could run code of whoever wrote it.
 */
static bool
eb_index_is_builtin_btree(Oid indexoid, HeapTuple indtup, int nkeys)
{
	HeapTuple	classtup = SearchSysCache1(RELOID, ObjectIdGetDatum(indexoid));
	bool		ok;
	bool		isnull;
	Datum		d;
	oidvector  *indclass;
	int			i;

	if (!HeapTupleIsValid(classtup))
		elog(ERROR, "cache lookup failed for relation %u", indexoid);
	ok = ((Form_pg_class) GETSTRUCT(classtup))->relam == BTREE_AM_OID;
	ReleaseSysCache(classtup);
	d = SysCacheGetAttr(INDEXRELID, indtup, Anum_pg_index_indclass, &isnull);
	if (isnull)
		return false;
	indclass = (oidvector *) DatumGetPointer(d);
	for (i = 0; ok && i < nkeys; i++)
		ok = get_opclass_family(indclass->values[i]) < FirstNormalObjectId;
	return ok;
}

/*
 * The indexes publishing maintains on a segment, validated once per
 * relcache version of the table (see EbSegmentIndexSet): its primary key
 * (partition, position) and its partial index on idempotency_key,
 * recognized from their pg_index rows (a REINDEX CONCURRENTLY may add a
 * copy of either for a while), built-in btrees with built-in operator
 * families.  Any other index makes publishing refuse: it would be ignored
 * otherwise, and evaluating it could run code of whoever wrote it.  Also
 * checks the table's columns.
 */
static EbSegmentIndexSet *
eb_segment_index_set(Relation rel)
{
	Oid			relid = RelationGetRelid(rel);
	EbSegmentIndexSet *set;
	EbSegmentIndexSet scratch_set;
	EbSegment	scratch;
	List	   *indexes;
	ListCell   *lc;
	bool		found;

	if (segment_index_sets == NULL)
	{
		HASHCTL		ctl;

		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(EbSegmentIndexSet);
		ctl.hcxt = CacheMemoryContext;
		segment_index_sets = hash_create("pg_eventbus segment indexes", 64, &ctl,
										 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
		CacheRegisterRelcacheCallback(eb_segment_index_sets_invalidate, (Datum) 0);
	}
	set = hash_search(segment_index_sets, &relid, HASH_FIND, &found);
	if (found)
		return set;

	/* the columns, and a usable (partition, position) index */
	memset(&scratch, 0, sizeof(scratch));
	eb_segment_resolve_indexes(&scratch, rel);

	memset(&scratch_set, 0, sizeof(scratch_set));
	scratch_set.relid = relid;
	indexes = RelationGetIndexList(rel);
	foreach(lc, indexes)
	{
		Oid			indexoid = lfirst_oid(lc);
		HeapTuple	tup;
		Form_pg_index ix;
		bool		is_pk;
		bool		is_idem;

		tup = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(indexoid));
		if (!HeapTupleIsValid(tup))
			elog(ERROR, "cache lookup failed for index %u", indexoid);
		ix = (Form_pg_index) GETSTRUCT(tup);
		is_pk = ix->indnatts == 2 && ix->indnkeyatts == 2 && ix->indisunique &&
			!ix->indisexclusion && ix->indimmediate &&
			ix->indkey.values[0] == Anum_ev_partition &&
			ix->indkey.values[1] == Anum_ev_position &&
			heap_attisnull(tup, Anum_pg_index_indexprs, NULL) &&
			heap_attisnull(tup, Anum_pg_index_indpred, NULL);
		is_idem = ix->indnatts == 1 && ix->indnkeyatts == 1 && !ix->indisunique &&
			!ix->indisexclusion &&
			ix->indkey.values[0] == Anum_ev_idempotency_key &&
			heap_attisnull(tup, Anum_pg_index_indexprs, NULL) &&
			eb_is_idem_predicate(tup);
		if ((is_pk || is_idem) && !eb_index_is_builtin_btree(indexoid, tup, ix->indnkeyatts))
			is_pk = is_idem = false;
		ReleaseSysCache(tup);

		if (!is_pk && !is_idem)
			eb_refuse_segment(rel, "index", get_rel_name(indexoid));
		if (scratch_set.n == EB_MAX_SEGMENT_INDEX_SET)
			eb_refuse_segment(rel, "too many copies of its indexes", NULL);
		scratch_set.oid[scratch_set.n] = indexoid;
		scratch_set.is_idem[scratch_set.n] = is_idem;
		scratch_set.n++;
	}
	list_free(indexes);

	/* entered only once valid: an error above leaves no entry */
	set = hash_search(segment_index_sets, &relid, HASH_ENTER, NULL);
	memcpy(set, &scratch_set, sizeof(*set));
	return set;
}

/*
 * Opens the indexes of a segment that publishing maintains (see
 * eb_segment_index_set) and that are ready for inserts; the idempotency
 * key's only if some event has a key (the index is partial: rows without
 * one have no entry).  Anything else that INSERT would evaluate or enforce
 * (a trigger, a rule, row security, a CHECK constraint) makes publishing
 * refuse, as another index does.
 */
static void
eb_open_segment_indexes(Relation rel, bool with_idem, EbPublishIndexes *out)
{
	EbSegmentIndexSet *set;
	int			npk = 0;
	int			k;

	if (rel->trigdesc != NULL && rel->trigdesc->numtriggers > 0)
		eb_refuse_segment(rel, "trigger", rel->trigdesc->triggers[0].tgname);
	if (rel->rd_rules != NULL)
		eb_refuse_segment(rel, "rules", NULL);
	if (rel->rd_rel->relrowsecurity || rel->rd_rel->relforcerowsecurity)
		eb_refuse_segment(rel, "row security enabled", NULL);
	if (rel->rd_att->constr != NULL && rel->rd_att->constr->num_check > 0)
		eb_refuse_segment(rel, "check constraint", rel->rd_att->constr->check[0].ccname);

	set = eb_segment_index_set(rel);
	out->n = 0;
	for (k = 0; k < set->n; k++)
	{
		bool		is_idem = set->is_idem[k];
		Relation	idx;

		if (is_idem && !with_idem)
			continue;
		idx = index_open(set->oid[k], RowExclusiveLock);
		if (!idx->rd_index->indisready || !idx->rd_index->indislive)
		{
			index_close(idx, RowExclusiveLock);
			continue;
		}
		if (out->n == EB_MAX_SEGMENT_INDEXES)
			eb_refuse_segment(rel, "too many copies of its indexes", NULL);
		if (!is_idem)
			npk++;
		out->idx[out->n] = idx;
		out->is_idem[out->n] = is_idem;
		/* nothing to evaluate: no expressions, no predicate given */
		out->info[out->n] = eb_make_index_info(is_idem ? 1 : 2, is_idem ? 1 : 2,
											   BTREE_AM_OID, !is_idem);
		out->n++;
	}
	if (npk == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("segment table %s.%s has no (partition, position) index",
						EB_DATA_SCHEMA, quote_identifier(RelationGetRelationName(rel))),
				 errhint("Do not alter the tables in schema %s by hand.", EB_DATA_SCHEMA)));
}

/*
 * Inserts events[0..n-1], all of one partition with consecutive positions,
 * into an open segment relation, and inserts their entries into the
 * segment's own two indexes, with values built here: nothing of the table's
 * is evaluated, as the caller or anyone else.
 */
static void
eb_insert_events(EbTopic *topic, Relation rel, EbEvent **events, int n)
{
	CommandId	cid = GetCurrentCommandId(true);
	TimestampTz now = GetCurrentTimestamp();
	EbPublishIndexes ix;
	TupleTableSlot **slots = palloc(sizeof(TupleTableSlot *) * n);
	bool		with_idem = false;
	int			i;
	int			j;

	for (i = 0; i < n && !with_idem; i++)
		with_idem = events[i]->idem != NULL;
	/* validates the table's columns and indexes */
	eb_open_segment_indexes(rel, with_idem, &ix);

	for (i = 0; i < n; i++)
	{
		TupleTableSlot *slot = table_slot_create(rel, NULL);
		pg_uuid_t  *id = palloc(sizeof(pg_uuid_t));
		EbEvent    *ev = events[i];

		eb_uuid_v7(id);
		ExecClearTuple(slot);
		memset(slot->tts_isnull, 0, sizeof(bool) * Natts_ev);
		slot->tts_values[Anum_ev_partition - 1] = Int32GetDatum(ev->partition);
		slot->tts_values[Anum_ev_position - 1] = Int64GetDatum(ev->position);
		slot->tts_values[Anum_ev_event_id - 1] = UUIDPGetDatum(id);
		slot->tts_values[Anum_ev_created_at - 1] = TimestampTzGetDatum(now);
		slot->tts_values[Anum_ev_key - 1] = ev->key ? PointerGetDatum(ev->key) : (Datum) 0;
		slot->tts_isnull[Anum_ev_key - 1] = ev->key == NULL;
		slot->tts_values[Anum_ev_value - 1] = ev->value;
		slot->tts_values[Anum_ev_headers - 1] = ev->headers ? JsonbPGetDatum(ev->headers) : (Datum) 0;
		slot->tts_isnull[Anum_ev_headers - 1] = ev->headers == NULL;
		slot->tts_values[Anum_ev_idempotency_key - 1] = ev->idem ? PointerGetDatum(ev->idem) : (Datum) 0;
		slot->tts_isnull[Anum_ev_idempotency_key - 1] = ev->idem == NULL;
		ExecStoreVirtualTuple(slot);
		slots[i] = slot;
	}

	if (n == 1)
		table_tuple_insert(rel, slots[0], cid, 0, NULL);
	else
		table_multi_insert(rel, slots, n, cid, 0, NULL);

	for (i = 0; i < n; i++)
	{
		EbEvent    *ev = events[i];

		for (j = 0; j < ix.n; j++)
		{
			Datum		values[2];
			bool		isnull[2] = {false, false};

			if (ix.is_idem[j])
			{
				if (ev->idem == NULL)
					continue;
				values[0] = PointerGetDatum(ev->idem);
				(void) index_insert(ix.idx[j], values, isnull, &slots[i]->tts_tid, rel,
									UNIQUE_CHECK_NO, false, ix.info[j]);
			}
			else
			{
				values[0] = Int32GetDatum(ev->partition);
				values[1] = Int64GetDatum(ev->position);
				(void) index_insert(ix.idx[j], values, isnull, &slots[i]->tts_tid, rel,
									UNIQUE_CHECK_YES, false, ix.info[j]);
			}
		}
		ExecDropSingleTupleTableSlot(slots[i]);
	}
	for (j = 0; j < ix.n; j++)
		index_close(ix.idx[j], NoLock);
}

/*
 * Assigns positions to events[0..n-1] (one partition) and inserts them.
 * Their positions stay registered (the read horizon) until the transaction ends.
 */
static void
eb_publish_group(EbTopic *topic, int32 partition, EbEvent **events, int n)
{
	int64		first;
	Relation	rel;
	int			i;

	rel = eb_assign_positions(topic, partition, n, &first);

	/*
	 * relay_topic() waits for the transactions publishing to the topic, on
	 * the segment's lock taken above: one that committed while this publish
	 * waited (or before it, unseen by a REPEATABLE READ snapshot) decides
	 * that this transaction is relayed, as it commits after it.  So the
	 * size as relayed is checked again, with a new snapshot, for the events
	 * whose check depended on it.
	 */
	for (i = 0; i < n; i++)
		if (events[i]->size_by_mapping)
			(void) eb_check_relayed_size(topic, events[i]->value, events[i]->key,
										 events[i]->headers, true);
	for (i = 0; i < n; i++)
		events[i]->position = first + i;
	eb_insert_events(topic, rel, events, n);
	table_close(rel, NoLock);
	eb_xact_published = true;
	eb_notify_record(topic);
	eb_stats_count(topic, EB_STAT_PUBLISHED, n);
}

/*
 * Looks for an event of this topic carrying the idempotency key, committed
 * or written earlier by this transaction.  Caller holds the key's lock.
 */
static bool
eb_find_idempotent(EbTopic *topic, text *idem, int32 *partition, int64 *position)
{
	int			i;

	for (i = topic->nsegments - 1; i >= 0; i--)
	{
		EbSegment  *seg = &topic->segments[i];
		Relation	rel;
		Relation	idx;
		ScanKeyData skey;
		IndexScanDesc scan;
		TupleTableSlot *slot;
		SnapshotData dirty;
		bool		found = false;

		rel = try_relation_open(seg->relid, AccessShareLock);
		if (rel == NULL)
			continue;
		eb_segment_resolve_indexes(seg, rel);
		if (!OidIsValid(seg->idem_index))
		{
			relation_close(rel, AccessShareLock);
			continue;
		}
		idx = index_open(seg->idem_index, AccessShareLock);
		ScanKeyEntryInitialize(&skey, 0, 1, BTEqualStrategyNumber, InvalidOid,
							   idx->rd_indcollation[0], F_TEXTEQ,
							   PointerGetDatum(idem));
		InitDirtySnapshot(dirty);
		scan = eb_index_beginscan(rel, idx, &dirty, 1, 0);
		index_rescan(scan, &skey, 1, NULL, 0);
		slot = table_slot_create(rel, NULL);
		if (index_getnext_slot(scan, ForwardScanDirection, slot))
		{
			bool		isnull;

			*partition = DatumGetInt32(slot_getattr(slot, Anum_ev_partition, &isnull));
			*position = DatumGetInt64(slot_getattr(slot, Anum_ev_position, &isnull));
			found = true;
		}
		index_endscan(scan);
		ExecDropSingleTupleTableSlot(slot);
		index_close(idx, AccessShareLock);
		relation_close(rel, AccessShareLock);
		if (found)
			return true;
	}
	return false;
}

/*
 * Publishes one event on behalf of pg_eventbus itself (dead letters): no
 * privilege or reserved-header checks.  The key picks the partition.
 * size_by_mapping: what eb_check_relayed_size() returned for it.
 */
void
eb_publish_internal(EbTopic *topic, Datum value, text *key, Jsonb *headers,
					bool size_by_mapping, int32 *partition, int64 *position)
{
	EbEvent		ev;
	EbEvent    *evp = &ev;

	memset(&ev, 0, sizeof(ev));
	ev.value = value;
	ev.key = key;
	ev.headers = headers;
	ev.partition = key ? eb_key_partition(key, topic->partitions)
		: eb_next_round_robin(topic->partitions);
	ev.size_by_mapping = size_by_mapping;
	eb_publish_group(topic, ev.partition, &evp, 1);
	*partition = ev.partition;
	*position = ev.position;
}

/*
 * An eventbus.event_position of the declared result type: with 0.1.0
 * objects it has no duplicate attribute (added in 0.2.0).
 */
static void
eb_position_values(TupleDesc tupdesc, int32 partition, int64 position, bool duplicate,
				   Datum *values, bool *nulls)
{
	int			i;

	for (i = 0; i < tupdesc->natts; i++)
	{
		values[i] = (Datum) 0;
		nulls[i] = true;
	}
	values[0] = Int32GetDatum(partition);
	nulls[0] = false;
	values[1] = Int64GetDatum(position);
	nulls[1] = false;
	if (tupdesc->natts > 2)
	{
		values[2] = BoolGetDatum(duplicate);
		nulls[2] = false;
	}
}

static Datum
eb_position_datum(FunctionCallInfo fcinfo, int32 partition, int64 position, bool duplicate)
{
	TupleDesc	tupdesc;
	Datum	   *values;
	bool	   *nulls;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	values = palloc(sizeof(Datum) * tupdesc->natts);
	nulls = palloc(sizeof(bool) * tupdesc->natts);
	eb_position_values(tupdesc, partition, position, duplicate, values, nulls);
	return HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc), values, nulls));
}

/*
 * publish(topic text, value jsonb, key text, headers jsonb, partition int,
 *		   idempotency_key text) returns eventbus.event_position
 */
Datum
eb_publish(PG_FUNCTION_ARGS)
{
	char	   *name = eb_arg_name(fcinfo, 0, "topic");
	EbTopic    *topic;
	EbEvent		ev;
	EbEvent    *evp = &ev;

	eb_check_writable("eventbus.publish()");
	topic = eb_topic_get(name, false);
	eb_check_publish_privilege(topic);

	eb_arg_not_null(fcinfo, 1, "value");
	memset(&ev, 0, sizeof(ev));
	ev.value = PG_GETARG_DATUM(1);
	ev.key = PG_ARGISNULL(2) ? NULL : PG_GETARG_TEXT_PP(2);
	ev.headers = PG_ARGISNULL(3) ? NULL : PG_GETARG_JSONB_P(3);
	ev.idem = PG_ARGISNULL(5) ? NULL : PG_GETARG_TEXT_PP(5);
	if (ev.headers)
		eb_check_headers(ev.headers);
	ev.headers = eb_trace_headers(ev.headers);
	eb_schema_validate_event(topic, ev.value, &ev.headers, 0);
	ev.size_by_mapping = eb_check_event_size(topic, ev.value, ev.key, ev.headers);

	if (!PG_ARGISNULL(4))
	{
		ev.partition = PG_GETARG_INT32(4);
		eb_check_partition_arg(topic, ev.partition);
	}
	else if (ev.key != NULL)
		ev.partition = eb_key_partition(ev.key, topic->partitions);
	else
		ev.partition = eb_next_round_robin(topic->partitions);

	if (ev.idem != NULL)
	{
		LOCKTAG		tag;
		int32		found_partition;
		int64		found_position;

		if (VARSIZE_ANY_EXHDR(ev.idem) == 0 || VARSIZE_ANY_EXHDR(ev.idem) > 1024)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("idempotency key must have 1 to 1024 bytes")));
		SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, (uint32) topic->topic_id,
							 hash_bytes((const unsigned char *) VARDATA_ANY(ev.idem),
										VARSIZE_ANY_EXHDR(ev.idem)),
							 EB_IDEMPOTENCY_LOCK_CLASS);
		(void) LockAcquire(&tag, ExclusiveLock, false, false);

		/* The previous holder may have changed segments: revalidate. */
		topic = eb_topic_get(name, false);
		if (eb_find_idempotent(topic, ev.idem, &found_partition, &found_position))
			PG_RETURN_DATUM(eb_position_datum(fcinfo, found_partition, found_position, true));
	}

	eb_publish_group(topic, ev.partition, &evp, 1);
	PG_RETURN_DATUM(eb_position_datum(fcinfo, ev.partition, ev.position, false));
}

static int
eb_cmp_partition(const void *a, const void *b)
{
	const EbEvent *ea = *(EbEvent *const *) a;
	const EbEvent *eb = *(EbEvent *const *) b;

	if (ea->partition != eb->partition)
		return ea->partition < eb->partition ? -1 : 1;
	/* keep input order within a partition: EbEvent array order */
	return ea < eb ? -1 : (ea > eb ? 1 : 0);
}

static Datum *
eb_array_elems(ArrayType *arr, Oid elemtype, bool **nulls, int *n, const char *what)
{
	int16		typlen;
	bool		typbyval;
	char		typalign;
	Datum	   *elems;

	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("%s must be a one-dimensional array", what)));
	get_typlenbyvalalign(elemtype, &typlen, &typbyval, &typalign);
	deconstruct_array(arr, elemtype, typlen, typbyval, typalign, &elems, nulls, n);
	return elems;
}

/*
 * publish_batch(topic text, vals jsonb[], keys text[], headers jsonb[])
 * returns setof eventbus.event_position, one row per event in input order.
 */
Datum
eb_publish_batch(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *name = eb_arg_name(fcinfo, 0, "topic");
	EbTopic    *topic;
	Datum	   *vals;
	bool	   *valnulls;
	int			n;
	Datum	   *keys = NULL;
	bool	   *keynulls = NULL;
	int			nkeys = 0;
	Datum	   *hdrs = NULL;
	bool	   *hdrnulls = NULL;
	int			nhdrs = 0;
	EbEvent    *events;
	EbEvent   **sorted;
	int32		sticky = -1;
	int			i;
	int			start;

	eb_check_writable("eventbus.publish_batch()");
	topic = eb_topic_get(name, false);
	eb_check_publish_privilege(topic);

	eb_arg_not_null(fcinfo, 1, "vals");
	vals = eb_array_elems(PG_GETARG_ARRAYTYPE_P(1), JSONBOID, &valnulls, &n, "vals");
	if (!PG_ARGISNULL(2))
	{
		keys = eb_array_elems(PG_GETARG_ARRAYTYPE_P(2), TEXTOID, &keynulls, &nkeys, "keys");
		if (nkeys != n)
			ereport(ERROR,
					(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
					 errmsg("keys has %d elements but vals has %d", nkeys, n),
					 errhint("Pass one key per value; use NULL elements for events without a key.")));
	}
	if (!PG_ARGISNULL(3))
	{
		hdrs = eb_array_elems(PG_GETARG_ARRAYTYPE_P(3), JSONBOID, &hdrnulls, &nhdrs, "headers");
		if (nhdrs != n)
			ereport(ERROR,
					(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
					 errmsg("headers has %d elements but vals has %d", nhdrs, n),
					 errhint("Pass one headers object per value; use NULL elements for events without headers.")));
	}

	InitMaterializedSRF(fcinfo, 0);

	events = palloc0(sizeof(EbEvent) * Max(n, 1));
	sorted = palloc(sizeof(EbEvent *) * Max(n, 1));
	for (i = 0; i < n; i++)
	{
		EbEvent    *ev = &events[i];

		if (valnulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("vals[%d] must not be null", i + 1)));
		ev->value = vals[i];
		ev->key = (keys && !keynulls[i]) ? DatumGetTextPP(keys[i]) : NULL;
		ev->headers = (hdrs && !hdrnulls[i]) ? DatumGetJsonbP(hdrs[i]) : NULL;
		if (ev->headers)
			eb_check_headers(ev->headers);
		ev->headers = eb_trace_headers(ev->headers);
		eb_schema_validate_event(topic, ev->value, &ev->headers, i + 1);
		ev->size_by_mapping = eb_check_event_size(topic, ev->value, ev->key, ev->headers);
		if (ev->key != NULL)
			ev->partition = eb_key_partition(ev->key, topic->partitions);
		else
		{
			/* keyless events of one call stay together, like Kafka's sticky partitioner */
			if (sticky < 0)
				sticky = eb_next_round_robin(topic->partitions);
			ev->partition = sticky;
		}
		sorted[i] = ev;
	}

	qsort(sorted, n, sizeof(EbEvent *), eb_cmp_partition);
	for (start = 0; start < n;)
	{
		int			end = start;

		while (end < n && sorted[end]->partition == sorted[start]->partition)
			end++;
		eb_publish_group(topic, sorted[start]->partition, &sorted[start], end - start);
		start = end;
	}

	for (i = 0; i < n; i++)
	{
		Datum	   *values = palloc(sizeof(Datum) * rsinfo->setDesc->natts);
		bool	   *nulls = palloc(sizeof(bool) * rsinfo->setDesc->natts);

		eb_position_values(rsinfo->setDesc, events[i].partition, events[i].position, false,
						   values, nulls);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		pfree(values);
		pfree(nulls);
	}
	return (Datum) 0;
}

/*
 * partition_for_key(key text, partitions int) returns int: the partition
 * Kafka's default partitioner, and publish(), pick for a key.
 */
Datum
eb_partition_for_key(PG_FUNCTION_ARGS)
{
	int32		partitions;

	eb_arg_not_null(fcinfo, 0, "key");
	eb_arg_not_null(fcinfo, 1, "partitions");
	partitions = PG_GETARG_INT32(1);
	if (partitions < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("partitions must be at least 1")));
	PG_RETURN_INT32(eb_key_partition(PG_GETARG_TEXT_PP(0), partitions));
}
