/*-------------------------------------------------------------------------
 *
 * schema.c
 *	  JSON Schemas of topics on the publish path: the per-backend cache of
 *	  compiled schemas and the check of each published event.  Compiling
 *	  is in schema_compile.c, validating in schema_validate.c.
 *
 * A schema is compiled once per topic version and backend.  Cache: one entry per topic (keyed by the topic's uid), holding the
 * compiled schema of one version in its own memory context.  The topic
 * cache (catalog.c) knows the topic's current version and the inserting
 * transaction of its row (a registration that rolled back leaves its
 * version number free for the next one); when either differs from the
 * entry's, the entry is rebuilt.  Compiled regexes are freed by a reset
 * callback of the entry's context.
 *
 * Validation runs in a backend-wide scratch context reset before each event,
 * so nothing it allocates outlives the event: the detoasted value, iterators
 * and the error message.  An accepted event gets the version header
 * (allocated with the event's other data, in the caller's context).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "settings.h"
#include "catalog.h"
#include "compat.h"
#include "schema_int.h"

/* ---------- the cache and the publish path ---------- */

typedef struct EbSchemaEntry
{
	int64		uid;			/* hash key: the topic's uid */
	int32		version;
	TransactionId xmin;			/* of the version's row: an aborted
								 * registration's number may be reused */
	MemoryContext cxt;
	EbSchema   *schema;			/* NULL until compiled */
	Jsonb	   *header;			/* {"eventbus-schema-version": "<version>"} */
} EbSchemaEntry;

static HTAB *schema_cache = NULL;
static MemoryContext scratch_cxt = NULL;

static Jsonb *
eb_version_header(int32 version)
{
	EbJsonbBuild b = {0};
	JsonbValue	k;
	JsonbValue	v;
	char	   *s = psprintf("%d", version);

	k.type = jbvString;
	k.val.string.val = EB_SCHEMA_VERSION_HEADER;
	k.val.string.len = strlen(EB_SCHEMA_VERSION_HEADER);
	v.type = jbvString;
	v.val.string.val = s;
	v.val.string.len = strlen(s);
	eb_jsonb_push(&b, WJB_BEGIN_OBJECT, NULL);
	eb_jsonb_push(&b, WJB_KEY, &k);
	eb_jsonb_push(&b, WJB_VALUE, &v);
	eb_jsonb_push(&b, WJB_END_OBJECT, NULL);
	return JsonbValueToJsonb(eb_jsonb_result(&b));
}

static EbSchemaEntry *
eb_schema_cache_get(EbTopic *topic)
{
	EbSchemaEntry *entry;
	bool		found;
	Jsonb	   *doc;
	Snapshot	snap;
	MemoryContext oldcxt;

	if (schema_cache == NULL)
	{
		HASHCTL		ctl;

		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = sizeof(int64);
		ctl.entrysize = sizeof(EbSchemaEntry);
		ctl.hcxt = CacheMemoryContext;
		schema_cache = hash_create("pg_eventbus schemas", 16, &ctl,
								   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
		scratch_cxt = AllocSetContextCreate(CacheMemoryContext,
											"pg_eventbus schema validation",
											ALLOCSET_DEFAULT_SIZES);
	}
	entry = hash_search(schema_cache, &topic->uid, HASH_ENTER, &found);
	if (!found)
	{
		entry->cxt = NULL;
		entry->schema = NULL;
		entry->version = 0;
	}
	if (entry->schema != NULL && entry->version == topic->schema_version &&
		entry->xmin == topic->schema_xmin)
		return entry;

	if (entry->cxt != NULL)
		MemoryContextDelete(entry->cxt);
	entry->schema = NULL;
	entry->version = topic->schema_version;
	entry->xmin = topic->schema_xmin;
	entry->cxt = AllocSetContextCreate(CacheMemoryContext, "pg_eventbus schema",
									   ALLOCSET_SMALL_SIZES);

	snap = RegisterSnapshot(GetLatestSnapshot());
	oldcxt = MemoryContextSwitchTo(entry->cxt);
	doc = eb_topic_schema_scan(topic->topic_id, topic->schema_version, snap, NULL, NULL);
	MemoryContextSwitchTo(oldcxt);
	UnregisterSnapshot(snap);
	if (doc == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("version %d of the schema of topic \"%s\" does not exist",
						topic->schema_version, topic->name)));
	oldcxt = MemoryContextSwitchTo(entry->cxt);
	entry->header = eb_version_header(topic->schema_version);
	MemoryContextSwitchTo(oldcxt);
	entry->schema = eb_schema_compile(doc, entry->cxt);
	return entry;
}

/* headers plus the version header, in the current memory context */
static Jsonb *
eb_add_version_header(Jsonb *headers, EbSchemaEntry *entry)
{
	EbJsonbBuild b = {0};
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	JsonbValue	k;
	Jsonb	   *copy;

	if (headers == NULL)
	{
		copy = palloc(VARSIZE(entry->header));
		memcpy(copy, entry->header, VARSIZE(entry->header));
		return copy;
	}
	it = JsonbIteratorInit(&headers->root);
	while ((tok = JsonbIteratorNext(&it, &v, false)) != WJB_DONE)
	{
		if (tok == WJB_END_OBJECT)
		{
			JsonbValue	hv;

			k.type = jbvString;
			k.val.string.val = EB_SCHEMA_VERSION_HEADER;
			k.val.string.len = strlen(EB_SCHEMA_VERSION_HEADER);
			(void) getKeyJsonValueFromContainer(&entry->header->root, k.val.string.val,
												k.val.string.len, &hv);
			eb_jsonb_push(&b, WJB_KEY, &k);
			eb_jsonb_push(&b, WJB_VALUE, &hv);
		}
		eb_jsonb_push(&b, tok, tok < WJB_BEGIN_ARRAY ? &v : NULL);
	}
	return JsonbValueToJsonb(eb_jsonb_result(&b));
}

void
eb_schema_validate_event(EbTopic *topic, Datum value, Jsonb **headers, int element)
{
	EbSchemaEntry *entry;
	MemoryContext oldcxt;
	StringInfoData msg;
	Jsonb	   *jb;
	JsonbValue	root;
	bool		ok;

	if (topic->schema_version == 0)
		return;
	entry = eb_schema_cache_get(topic);

	MemoryContextReset(scratch_cxt);
	oldcxt = MemoryContextSwitchTo(scratch_cxt);
	jb = DatumGetJsonbP(value);
	if (JB_ROOT_IS_SCALAR(jb))
		JsonbExtractScalar(&jb->root, &root);
	else
	{
		root.type = jbvBinary;
		root.val.binary.data = &jb->root;
		root.val.binary.len = VARSIZE(jb) - VARHDRSZ;
	}
	ok = eb_schema_check(entry->schema, &root, &msg);
	MemoryContextSwitchTo(oldcxt);

	if (!ok)
	{
		if (element > 0)
			ereport(ERROR,
					(errcode(ERRCODE_CHECK_VIOLATION),
					 errmsg("vals[%d]: %s", element, msg.data),
					 errdetail("Event %d of the batch (vals[%d], counting from 1) does not conform to version %d of the schema of topic \"%s\"; no event of the batch was published.",
							   element, element, entry->version, topic->name)));
		ereport(ERROR,
				(errcode(ERRCODE_CHECK_VIOLATION),
				 errmsg("%s", msg.data),
				 errdetail("The event does not conform to version %d of the schema of topic \"%s\".",
						   entry->version, topic->name)));
	}
	*headers = eb_add_version_header(*headers, entry);
}
