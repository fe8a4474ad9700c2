/*-------------------------------------------------------------------------
 *
 * catalog.c
 *	  pg_eventbus's own tables (eventbus.topic, eventbus.segment, and the
 *	  schema versions of eventbus.topic_schema) and a backend-local cache
 *	  of them.
 *
 * The cache is keyed by topic name.  An entry is valid while two versions
 * in shared memory (shmem.c) are unchanged: its database's, bumped after a
 * transaction that changed the topic list (creating, altering or dropping
 * a topic, a schema, a relay setting) commits, and its topic's, bumped
 * after a transaction that changed only that topic's segments (maintenance)
 * commits.  So a rotation makes only the backends that use the rotated
 * topic reload it, and nothing in one database makes another database's
 * backends reload.  Backends of the same database also reload every topic
 * on a relcache invalidation of eventbus.topic, which eb_catalog_changed()
 * sends (for the relay, see there) and which is delivered at the next
 * transaction start.  An entry
 * holds the topic's current schema version (eventbus.topic_schema), whose
 * compiled schema schema.c caches.  Entries are loaded
 * with the latest committed snapshot, not the caller's, so a cache entry
 * never hides a segment that other backends already write to.  Pre-created
 * spare segments make this safe: a segment is in the catalog before it can
 * receive events.
 *
 * The catalog is read and written with internal SQL run as the extension
 * owner through privileged.c, which checks every such statement.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/genam.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/indexing.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_index.h"
#include "catalog/pg_type.h"
#include "storage/lmgr.h"
#include "miscadmin.h"
#include "access/stratnum.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "settings.h"
#include "catalog.h"
#include "compat.h"
#include "shmem.h"
#include "util.h"

static HTAB *topic_cache = NULL;
static MemoryContext topic_cache_cxt = NULL;
static Oid	known_topic_relid = InvalidOid;
static Oid	known_segment_relid = InvalidOid;
static Oid	topic_name_index = InvalidOid;	/* index on eventbus.topic (topic) */
static Oid	segment_topic_index = InvalidOid;	/* on eventbus.segment (topic_id, ...) */
static Oid	version_checked_extoid = InvalidOid;

/* Transaction-scoped bookkeeping */
typedef struct EbForget
{
	Oid			dboid;
	int64		uid;
	int32		partitions;
	bool		at_commit;
	SubTransactionId subid;		/* subtransaction that queued it */
} EbForget;

static bool xact_changed = false;	/* the topic list changed */
static List *changed_topics = NIL;	/* topics whose segments changed */
static List *forget_list = NIL;

static int	eb_catalog_reclaim_slots(void);

/* ---------- object lookups ---------- */

Oid
eb_schema_oid(bool missing_ok)
{
	return get_namespace_oid(EB_SCHEMA, missing_ok);
}

Oid
eb_data_schema_oid(void)
{
	Oid			nsp = get_namespace_oid(EB_DATA_SCHEMA, true);

	if (!OidIsValid(nsp))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("schema \"%s\" does not exist", EB_DATA_SCHEMA),
				 errhint("Reinstall the extension with DROP EXTENSION pg_eventbus CASCADE; CREATE EXTENSION pg_eventbus;")));
	return nsp;
}

/*
 * Refuses to work with SQL objects of a version this library does not serve
 * (EB_SQL_VERSIONS_SERVED).  Checked once per installed extension (its OID)
 * and backend: an extension dropped and created again is checked again, and
 * a failed check is repeated on every call, so that ALTER EXTENSION ...
 * UPDATE in the same session takes effect at once.
 */
static void
eb_check_sql_version(void)
{
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	Oid			extoid = InvalidOid;
	char	   *version = NULL;
	static const char *const served[] = {EB_SQL_VERSIONS_SERVED};

	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_extname, BTEqualStrategyNumber,
				F_NAMEEQ, CStringGetDatum(EB_EXTENSION));
	scan = systable_beginscan(rel, ExtensionNameIndexId, true, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
	{
		bool		isnull;
		Datum		d;

		extoid = ((Form_pg_extension) GETSTRUCT(tup))->oid;
		if (extoid == version_checked_extoid)
		{
			systable_endscan(scan);
			table_close(rel, AccessShareLock);
			return;
		}
		d = heap_getattr(tup, Anum_pg_extension_extversion,
						 RelationGetDescr(rel), &isnull);
		if (!isnull)
			version = TextDatumGetCString(d);
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);

	/* Not installed: the caller reports that. */
	if (!OidIsValid(extoid))
		return;
	for (int i = 0; i < (int) lengthof(served); i++)
		if (version != NULL && strcmp(version, served[i]) == 0)
		{
			version_checked_extoid = extoid;
			return;
		}
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("extension \"%s\" is at version %s in this database, which its library (version %s) does not support",
					EB_EXTENSION, version ? version : "(unknown)", EB_SQL_VERSION),
			 errhint("Install the library of version %s, or update the extension with ALTER EXTENSION %s UPDATE if a newer version is installed.",
					 version ? version : "(unknown)", EB_EXTENSION)));
}

Oid
eb_catalog_relid(const char *name)
{
	Oid			nsp = eb_schema_oid(true);
	Oid			relid = InvalidOid;

	if (OidIsValid(nsp))
	{
		eb_check_sql_version();
		relid = get_relname_relid(name, nsp);
	}
	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"%s\" is not installed in this database", EB_EXTENSION),
				 errhint("Run CREATE EXTENSION pg_eventbus.")));
	return relid;
}

/*
 * Does the extension's schema hold a relation of this name?  For objects
 * added after a release, which a database still at that release's version
 * lacks (see EB_SQL_VERSIONS_SERVED): callers do without them.
 */
bool
eb_catalog_has(const char *name)
{
	Oid			nsp = eb_schema_oid(true);

	return OidIsValid(nsp) && OidIsValid(get_relname_relid(name, nsp));
}

/* The owner of the extension's catalog tables, i.e. the extension owner. */
Oid
eb_extension_owner(void)
{
	Oid			relid = eb_catalog_relid("topic");
	HeapTuple	tup;
	Oid			owner;

	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);
	return owner;
}

/* ---------- topic cache ---------- */

static void
eb_topic_cache_invalidate(void)
{
	HASH_SEQ_STATUS status;
	EbTopic    *entry;

	if (topic_cache == NULL)
		return;
	hash_seq_init(&status, topic_cache);
	while ((entry = hash_seq_search(&status)) != NULL)
		entry->valid = false;
}

void
eb_topic_cache_reset(void)
{
	eb_topic_cache_invalidate();
}

/* Makes the next eb_topic_get() of this topic reload it; the others stay. */
void
eb_topic_cache_forget(const char *name)
{
	char		key[NAMEDATALEN];
	EbTopic    *entry;

	if (topic_cache == NULL)
		return;
	memset(key, 0, sizeof(key));
	strlcpy(key, name, NAMEDATALEN);
	entry = hash_search(topic_cache, key, HASH_FIND, NULL);
	if (entry != NULL)
		entry->valid = false;
}

static void
eb_relcache_callback(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == known_topic_relid ||
		relid == known_segment_relid)
	{
		eb_topic_cache_invalidate();
		/* their indexes may have been rebuilt (REINDEX CONCURRENTLY) */
		topic_name_index = segment_topic_index = InvalidOid;
	}
}

void
eb_catalog_init(void)
{
	CacheRegisterRelcacheCallback(eb_relcache_callback, (Datum) 0);
}

/* Elements of a bigint[] datum (NULL elements as 0). */
int64 *
eb_int8_array_values(Datum d, int *n)
{
	ArrayType  *arr = DatumGetArrayTypeP(d);
	Datum	   *elems;
	bool	   *nulls;
	int64	   *out;
	int			i;

	deconstruct_array(arr, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE,
					  &elems, &nulls, n);
	out = palloc(sizeof(int64) * Max(*n, 1));
	for (i = 0; i < *n; i++)
		out[i] = nulls[i] ? 0 : DatumGetInt64(elems[i]);
	return out;
}

static AttrNumber
eb_catalog_attnum(Oid relid, const char *column)
{
	AttrNumber	attnum = get_attnum(relid, column);

	if (attnum == InvalidAttrNumber)
		elog(ERROR, "pg_eventbus catalog table %u has no column %s", relid, column);
	return attnum;
}

static int
eb_cmp_segment(const void *a, const void *b)
{
	int32		x = ((const EbSegment *) a)->seg_no;
	int32		y = ((const EbSegment *) b)->seg_no;

	return (x > y) - (x < y);
}

/*
 * A valid index of rel whose first column is attnum (the extension's own
 * unique index or primary key), or InvalidOid.  Looked up once per table.
 */
static Oid
eb_catalog_index(Relation rel, AttrNumber attnum)
{
	List	   *indexes = RelationGetIndexList(rel);
	ListCell   *lc;
	Oid			found = InvalidOid;

	foreach(lc, indexes)
	{
		HeapTuple	tup = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(lfirst_oid(lc)));
		Form_pg_index idx;

		if (!HeapTupleIsValid(tup))
			continue;
		idx = (Form_pg_index) GETSTRUCT(tup);
		if (idx->indisvalid && idx->indnkeyatts >= 1 && idx->indkey.values[0] == attnum &&
			heap_attisnull(tup, Anum_pg_index_indexprs, NULL) &&
			heap_attisnull(tup, Anum_pg_index_indpred, NULL))
			found = idx->indexrelid;
		ReleaseSysCache(tup);
		if (OidIsValid(found))
			break;
	}
	list_free(indexes);
	return found;
}

static Oid
eb_schema_table(void)
{
	Oid			nsp = eb_schema_oid(true);

	return OidIsValid(nsp) ? get_relname_relid("topic_schema", nsp) : InvalidOid;
}

/*
 * Scans eventbus.topic_schema for one topic (as the caller: nothing is
 * evaluated).  With version > 0, returns a copy of that version's schema;
 * otherwise sets *current to the highest version not dropped and *xmin to
 * the inserting transaction of its row.
 */
Jsonb *
eb_topic_schema_scan(int32 topic_id, int32 version, Snapshot snap, int32 *current,
					 TransactionId *xmin)
{
	Oid			relid = eb_schema_table();
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;
	TupleDesc	desc;
	AttrNumber	a_id;
	AttrNumber	a_version;
	AttrNumber	a_schema;
	AttrNumber	a_dropped;
	Jsonb	   *result = NULL;

	if (current)
	{
		*current = 0;
		*xmin = InvalidTransactionId;
	}
	if (!OidIsValid(relid))
		return NULL;
	a_id = get_attnum(relid, "topic_id");
	a_version = get_attnum(relid, "version");
	a_schema = get_attnum(relid, "schema");
	a_dropped = get_attnum(relid, "dropped_at");
	if (a_id == InvalidAttrNumber || a_version == InvalidAttrNumber ||
		a_schema == InvalidAttrNumber || a_dropped == InvalidAttrNumber)
		elog(ERROR, "eventbus.topic_schema lacks a column");

	rel = table_open(relid, AccessShareLock);
	desc = RelationGetDescr(rel);
	scan = eb_table_beginscan(rel, snap, 0, NULL);
	while ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		bool		isnull;
		int32		v;

		if (DatumGetInt32(heap_getattr(tup, a_id, desc, &isnull)) != topic_id)
			continue;
		v = DatumGetInt32(heap_getattr(tup, a_version, desc, &isnull));
		if (version > 0)
		{
			if (v == version)
			{
				result = DatumGetJsonbPCopy(heap_getattr(tup, a_schema, desc, &isnull));
				break;
			}
			continue;
		}
		(void) heap_getattr(tup, a_dropped, desc, &isnull);
		if (isnull && v > *current)
		{
			*current = v;
			*xmin = HeapTupleHeaderGetXmin(tup->t_data);
		}
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	return result;
}

/* The topic's current schema version (0 if none) and its row's xmin, as of snap. */
static int32
eb_schema_current_version(int32 topic_id, Snapshot snap, TransactionId *xmin)
{
	int32		current;

	(void) eb_topic_schema_scan(topic_id, 0, snap, &current, xmin);
	return current;
}

/*
 * (Re)loads a cache entry from the catalog with the latest snapshot.
 * Returns false if the topic does not exist.
 *
 * The two small catalog tables are read directly, as the caller: this
 * runs on the publish path, where nothing switches users, and reading them
 * evaluates nothing but built-in comparisons.  They are read through their
 * indexes (on topic, and on topic_id, segment), so that loading one topic
 * costs the same with 10 topics as with 10,000.
 */
static bool
eb_topic_load(EbTopic *entry)
{
	uint64		db_version = eb_db_version(MyDatabaseId);
	uint64		topic_version = eb_topic_version(MyDatabaseId, entry->name);
	Oid			topic_relid = eb_catalog_relid("topic");
	Oid			segment_relid = eb_catalog_relid("segment");
	Relation	rel;
	SysScanDesc scan;
	ScanKeyData key;
	Snapshot	snap;
	HeapTuple	tup;
	TupleDesc	desc;
	bool		found = false;
	int			cap = 8;
	MemoryContext oldcxt;

	if (topic_relid != known_topic_relid)
		topic_name_index = InvalidOid;
	if (segment_relid != known_segment_relid)
		segment_topic_index = InvalidOid;
	known_topic_relid = topic_relid;
	known_segment_relid = segment_relid;

	MemoryContextReset(entry->cxt);
	entry->segments = NULL;
	entry->nsegments = 0;
	entry->pshared = NULL;
	entry->npshared = 0;
	entry->tshared = NULL;

	snap = RegisterSnapshot(GetLatestSnapshot());

	rel = table_open(topic_relid, AccessShareLock);
	desc = RelationGetDescr(rel);
	{
		AttrNumber	a_topic = eb_catalog_attnum(topic_relid, "topic");
		AttrNumber	a_id = eb_catalog_attnum(topic_relid, "topic_id");
		AttrNumber	a_uid = eb_catalog_attnum(topic_relid, "uid");
		AttrNumber	a_parts = eb_catalog_attnum(topic_relid, "partitions");
		AttrNumber	a_table = eb_catalog_attnum(topic_relid, "table_oid");
		AttrNumber	a_owner = eb_catalog_attnum(topic_relid, "owner");
		Oid			typid;
		int32		typmod;
		Oid			collid;

		if (!OidIsValid(topic_name_index))
			topic_name_index = eb_catalog_index(rel, a_topic);
		get_atttypetypmodcoll(topic_relid, a_topic, &typid, &typmod, &collid);
		ScanKeyEntryInitialize(&key, 0, a_topic, BTEqualStrategyNumber, InvalidOid,
							   collid, F_TEXTEQ, CStringGetTextDatum(entry->name));
		scan = systable_beginscan(rel, topic_name_index, OidIsValid(topic_name_index),
								  snap, 1, &key);
		while (!found && (tup = systable_getnext(scan)) != NULL)
		{
			bool		isnull;
			Datum		d = heap_getattr(tup, a_topic, desc, &isnull);
			char	   *name;

			if (isnull)
				continue;
			name = TextDatumGetCString(d);
			if (strcmp(name, entry->name) == 0)
			{
				found = true;
				entry->topic_id = DatumGetInt32(heap_getattr(tup, a_id, desc, &isnull));
				entry->uid = DatumGetInt64(heap_getattr(tup, a_uid, desc, &isnull));
				entry->partitions = DatumGetInt32(heap_getattr(tup, a_parts, desc, &isnull));
				entry->relid = DatumGetObjectId(heap_getattr(tup, a_table, desc, &isnull));
				entry->owner = DatumGetObjectId(heap_getattr(tup, a_owner, desc, &isnull));
			}
			pfree(name);
		}
		systable_endscan(scan);
	}
	table_close(rel, AccessShareLock);

	if (found)
	{
		AttrNumber	a_id = eb_catalog_attnum(segment_relid, "topic_id");
		AttrNumber	a_seg = eb_catalog_attnum(segment_relid, "segment");
		AttrNumber	a_table = eb_catalog_attnum(segment_relid, "table_oid");
		AttrNumber	a_act = eb_catalog_attnum(segment_relid, "activated_at");
		AttrNumber	a_start = eb_catalog_attnum(segment_relid, "start_positions");

		oldcxt = MemoryContextSwitchTo(entry->cxt);
		entry->segments = palloc0(sizeof(EbSegment) * cap);
		rel = table_open(segment_relid, AccessShareLock);
		desc = RelationGetDescr(rel);
		if (!OidIsValid(segment_topic_index))
			segment_topic_index = eb_catalog_index(rel, a_id);
		ScanKeyInit(&key, a_id, BTEqualStrategyNumber, F_INT4EQ,
					Int32GetDatum(entry->topic_id));
		scan = systable_beginscan(rel, segment_topic_index, OidIsValid(segment_topic_index),
								  snap, 1, &key);
		while ((tup = systable_getnext(scan)) != NULL)
		{
			bool		isnull;
			EbSegment  *seg;
			Datum		d;

			if (DatumGetInt32(heap_getattr(tup, a_id, desc, &isnull)) != entry->topic_id)
				continue;
			if (entry->nsegments == cap)
			{
				entry->segments = repalloc(entry->segments, sizeof(EbSegment) * cap * 2);
				memset(entry->segments + cap, 0, sizeof(EbSegment) * cap);
				cap *= 2;
			}
			seg = &entry->segments[entry->nsegments++];
			seg->seg_no = DatumGetInt32(heap_getattr(tup, a_seg, desc, &isnull));
			seg->relid = DatumGetObjectId(heap_getattr(tup, a_table, desc, &isnull));
			(void) heap_getattr(tup, a_act, desc, &isnull);
			seg->activated = !isnull;
			d = heap_getattr(tup, a_start, desc, &isnull);
			if (!isnull)
				seg->start = eb_int8_array_values(d, &seg->nstart);
		}
		systable_endscan(scan);
		table_close(rel, AccessShareLock);
		qsort(entry->segments, entry->nsegments, sizeof(EbSegment), eb_cmp_segment);
		entry->pshared = palloc0(sizeof(EbPartShared *) * entry->partitions);
		entry->npshared = entry->partitions;
		MemoryContextSwitchTo(oldcxt);
		entry->schema_version = eb_schema_current_version(entry->topic_id, snap,
														   &entry->schema_xmin);
	}

	UnregisterSnapshot(snap);

	entry->db_version = db_version;
	entry->topic_version = topic_version;
	entry->valid = found;
	return found;
}

EbTopic *
eb_topic_get(const char *name, bool missing_ok)
{
	EbTopic    *entry;
	bool		found;
	char		key[NAMEDATALEN];

	eb_validate_name("topic", name);
	eb_require_shmem();

	if (topic_cache == NULL)
	{
		HASHCTL		ctl;

		topic_cache_cxt = AllocSetContextCreate(CacheMemoryContext,
												"pg_eventbus topic cache",
												ALLOCSET_DEFAULT_SIZES);
		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = NAMEDATALEN;
		ctl.entrysize = sizeof(EbTopic);
		ctl.hcxt = topic_cache_cxt;
		topic_cache = hash_create("pg_eventbus topics", 64, &ctl,
								  HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	}

	memset(key, 0, sizeof(key));
	strlcpy(key, name, NAMEDATALEN);
	entry = hash_search(topic_cache, key, HASH_ENTER, &found);
	if (!found)
	{
		entry->valid = false;
		entry->db_version = entry->topic_version = 0;
		entry->cxt = AllocSetContextCreate(topic_cache_cxt, "pg_eventbus topic",
										   ALLOCSET_SMALL_SIZES);
		entry->segments = NULL;
		entry->nsegments = 0;
		entry->tshared = NULL;
		entry->pshared = NULL;
		entry->npshared = 0;
	}

	if (entry->valid && entry->db_version == eb_db_version(MyDatabaseId) &&
		entry->topic_version == eb_topic_version(MyDatabaseId, entry->name))
		return entry;

	if (!eb_topic_load(entry))
	{
		if (missing_ok)
			return NULL;
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("topic \"%s\" does not exist", name),
				 errhint("Create it with eventbus.create_topic().")));
	}
	return entry;
}

EbTopic *
eb_topic_get_text(text *name, bool missing_ok)
{
	return eb_topic_get(text_to_cstring(name), missing_ok);
}

/* ---------- transaction bookkeeping ---------- */

/*
 * Notes that this transaction changed topics or segments: cached entries
 * are reloaded now, and other backends reload after commit.  The relcache
 * invalidation of eventbus.topic reaches the relay's output plugin, which
 * caches topics' rows (partitions, relay_to) and replays it when decoding
 * past this commit.
 */
void
eb_catalog_changed(void)
{
	xact_changed = true;
	eb_topic_cache_invalidate();
	CacheInvalidateRelcacheByRelid(eb_catalog_relid("topic"));
}

/*
 * Notes that this transaction changed the segments of one topic, and
 * nothing else of it (maintenance): its cached entry is reloaded now, and
 * other backends reload that topic only, after commit.  No relcache
 * invalidation: the relay does not cache segments.
 */
void
eb_catalog_topic_changed(const char *name)
{
	ListCell   *lc;
	MemoryContext oldcxt;

	eb_topic_cache_forget(name);
	foreach(lc, changed_topics)
	{
		if (strcmp((char *) lfirst(lc), name) == 0)
			return;
	}
	oldcxt = MemoryContextSwitchTo(TopMemoryContext);
	changed_topics = lappend(changed_topics, pstrdup(name));
	MemoryContextSwitchTo(oldcxt);
}

bool
eb_catalog_changed_in_xact(void)
{
	return xact_changed || changed_topics != NIL;
}

static void
eb_forget_add(int64 uid, int32 partitions, bool at_commit)
{
	MemoryContext oldcxt = MemoryContextSwitchTo(TopMemoryContext);
	EbForget   *f = palloc(sizeof(EbForget));

	f->dboid = MyDatabaseId;
	f->uid = uid;
	f->partitions = partitions;
	f->at_commit = at_commit;
	f->subid = GetCurrentSubTransactionId();
	forget_list = lappend(forget_list, f);
	MemoryContextSwitchTo(oldcxt);
}

/* Release the shared state of a topic dropped by this transaction. */
void
eb_catalog_forget_at_commit(int64 uid, int32 partitions)
{
	eb_forget_add(uid, partitions, true);
}

/* Release the shared state of a topic created by this transaction. */
void
eb_catalog_forget_at_abort(int64 uid, int32 partitions)
{
	eb_forget_add(uid, partitions, false);
}

/*
 * A subtransaction ended: what it queued moves to its parent on commit; on
 * abort, drops it queued never happened and topics it created are gone.
 */
void
eb_catalog_subxact_end(SubTransactionId mySubid, SubTransactionId parentSubid, bool commit)
{
	ListCell   *lc;

	foreach(lc, forget_list)
	{
		EbForget   *f = lfirst(lc);

		if (f->subid != mySubid)
			continue;
		if (commit)
			f->subid = parentSubid;
		else
		{
			if (!f->at_commit)
				eb_shared_forget_topic(f->dboid, f->uid, f->partitions);
			forget_list = foreach_delete_current(forget_list, lc);
			pfree(f);
		}
	}
	/* what the subtransaction changed stays noted: a needless bump is harmless */
	if (!commit && (xact_changed || changed_topics != NIL))
		eb_topic_cache_invalidate();
}

/*
 * Finds (and with create, allocates) the shared slot of a topic of a
 * database.  The caller must take the slot's lock and check the key with
 * eb_topic_key_matches before trusting it.  When every slot is in use, the
 * slots of topics that no longer exist are reclaimed once before giving up.
 */
EbTopicShared *
eb_topic_shared(Oid dboid, int64 uid, bool create)
{
	EbTopicShared *t = eb_shared_topic_slot(dboid, uid, create);

	if (t == NULL && create && eb_catalog_reclaim_slots() > 0)
		t = eb_shared_topic_slot(dboid, uid, true);
	if (t == NULL && create)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("too many topics in use"),
				 errdetail("Shared memory has room for %d topics.", eb_shared->max_topics),
				 errhint("Raise eventbus.max_topics and restart the server.")));
	return t;
}

/* The same for a partition. */
EbPartShared *
eb_part_shared(Oid dboid, int64 uid, int32 partition, bool create)
{
	EbPartShared *p = eb_shared_part_slot(dboid, uid, partition, create);

	if (p == NULL && create && eb_catalog_reclaim_slots() > 0)
		p = eb_shared_part_slot(dboid, uid, partition, true);
	if (p == NULL && create)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("too many partitions in use"),
				 errdetail("Shared memory has room for %d partitions across all topics.",
						   eb_shared->max_partitions),
				 errhint("Raise eventbus.max_partitions and restart the server.")));
	return p;
}

/* What eb_catalog_reclaim_slots found to exist. */
typedef struct EbLiveTopics
{
	int64	   *uids;			/* topics of this database, sorted */
	int			nuids;
	List	   *gone;			/* other databases that no longer exist */
} EbLiveTopics;

static int
eb_cmp_int64(const void *a, const void *b)
{
	int64		x = *(const int64 *) a;
	int64		y = *(const int64 *) b;

	return (x > y) - (x < y);
}

static bool
eb_slot_is_stale(Oid dboid, int64 uid, void *arg)
{
	EbLiveTopics *live = arg;

	if (dboid != MyDatabaseId)
		return list_member_oid(live->gone, dboid);
	return bsearch(&uid, live->uids, live->nuids, sizeof(int64), eb_cmp_int64) == NULL;
}

/*
 * Frees the shared slots of topics that no longer exist: those of this
 * database missing from eventbus.topic (the extension was dropped and
 * created again) and those of dropped databases.  Called when the slot
 * arrays are full; returns the number of slots freed.
 *
 * A SHARE lock on eventbus.topic waits for transactions that are creating
 * or dropping topics, whose slots may already be in use, and keeps new ones
 * out while the table is read with the latest snapshot.  Slots of another
 * database that still exists are left alone even if its extension is gone:
 * its catalog cannot be read from here.
 */
static int
eb_catalog_reclaim_slots(void)
{
	Oid			relid = eb_catalog_relid("topic");
	Relation	rel;
	TableScanDesc scan;
	Snapshot	snap;
	HeapTuple	tup;
	AttrNumber	uid_att;
	EbLiveTopics live;
	List	   *others;
	ListCell   *lc;
	int			cap = 64;
	int			freed;

	LockRelationOid(relid, ShareLock);
	rel = table_open(relid, NoLock);
	uid_att = get_attnum(relid, "uid");
	if (uid_att == InvalidAttrNumber)
		elog(ERROR, "eventbus.topic has no column uid");

	live.uids = palloc(sizeof(int64) * cap);
	live.nuids = 0;
	snap = RegisterSnapshot(GetLatestSnapshot());
	scan = eb_table_beginscan(rel, snap, 0, NULL);
	while ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		bool		isnull;
		Datum		d = heap_getattr(tup, uid_att, RelationGetDescr(rel), &isnull);

		if (isnull)
			continue;
		if (live.nuids == cap)
		{
			cap *= 2;
			live.uids = repalloc(live.uids, sizeof(int64) * cap);
		}
		live.uids[live.nuids++] = DatumGetInt64(d);
	}
	table_endscan(scan);
	UnregisterSnapshot(snap);
	qsort(live.uids, live.nuids, sizeof(int64), eb_cmp_int64);

	live.gone = NIL;
	others = eb_shared_other_databases();
	foreach(lc, others)
	{
		Oid			dboid = lfirst_oid(lc);

		if (!SearchSysCacheExists1(DATABASEOID, ObjectIdGetDatum(dboid)))
			live.gone = lappend_oid(live.gone, dboid);
	}

	freed = eb_shared_reclaim(eb_slot_is_stale, &live);

	table_close(rel, NoLock);
	/* creating and dropping topics may go on: nothing is left to reclaim */
	UnlockRelationOid(relid, ShareLock);

	if (freed > 0)
		ereport(DEBUG1,
				(errmsg("pg_eventbus: reclaimed %d shared slots of topics that no longer exist",
						freed)));
	list_free(others);
	list_free(live.gone);
	pfree(live.uids);
	return freed;
}

void
eb_catalog_xact_end(bool commit)
{
	ListCell   *lc;

	if (xact_changed || changed_topics != NIL)
	{
		if (commit && xact_changed)
			eb_db_version_bump(MyDatabaseId);
		else if (commit)
		{
			foreach(lc, changed_topics)
				eb_topic_version_bump(MyDatabaseId, (char *) lfirst(lc));
		}
		eb_topic_cache_invalidate();
		xact_changed = false;
		list_free_deep(changed_topics);
		changed_topics = NIL;
	}
	foreach(lc, forget_list)
	{
		EbForget   *f = lfirst(lc);

		if (f->at_commit == commit)
			eb_shared_forget_topic(f->dboid, f->uid, f->partitions);
	}
	list_free_deep(forget_list);
	forget_list = NIL;
}
