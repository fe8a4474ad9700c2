/*-------------------------------------------------------------------------
 *
 * schema_sql.c
 *	  eventbus.register_schema() and eventbus.drop_schema().
 *
 * Privileges: both need the privileges of the topic's owner (as
 * alter_topic() does).  The checks run as the caller; the rows of
 * eventbus.topic_schema are then read and written through privileged.c.
 * Nothing of the schema is evaluated as the extension owner: it is data,
 * compiled and compared by the C code of schema.c and schema_compat.c.
 *
 * Registrations and drops of one topic take turns under a SHARE UPDATE
 * EXCLUSIVE lock on the topic's table (as alter_topic() does), which does
 * not conflict with publishers.  A version takes effect for publishers when
 * its transaction commits (the catalog version bump reloads their topic
 * cache); an event records the version it was validated by in its
 * "eventbus-schema-version" header.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "settings.h"
#include "catalog.h"
#include "privileged.h"
#include "schema.h"
#include "schema_compat.h"
#include "topic.h"
#include "util.h"

PG_FUNCTION_INFO_V1(eb_register_schema);
PG_FUNCTION_INFO_V1(eb_drop_schema);

static const char *const eb_compat_modes[] = {
	"backward", "forward", "full",
	"backward_transitive", "forward_transitive", "full_transitive",
	"none"
};

/* A version of the topic's current line, as read by register_schema(). */
typedef struct EbVersion
{
	int32		version;
	Jsonb	   *schema;
} EbVersion;

static void
eb_append_reasons(StringInfo detail, List *reasons, int32 version, const char *direction)
{
	ListCell   *lc;

	foreach(lc, reasons)
	{
		if (detail->len > 0)
			appendStringInfoString(detail, "; ");
		appendStringInfo(detail, "%s (%s, version %d)", (char *) lfirst(lc), direction, version);
	}
}

/*
 * Checks the new schema against the versions of the current line under a
 * mode; returns the reasons it is incompatible, as one string, or NULL.
 */
static char *
eb_check_compatibility(Jsonb *new_schema, EbVersion *versions, int n, const char *mode)
{
	bool		backward = strncmp(mode, "backward", 8) == 0 || strncmp(mode, "full", 4) == 0;
	bool		forward = strncmp(mode, "forward", 7) == 0 || strncmp(mode, "full", 4) == 0;
	bool		transitive = strstr(mode, "_transitive") != NULL;
	StringInfoData detail;
	int			i;

	initStringInfo(&detail);
	for (i = n - 1; i >= 0 && i >= (transitive ? 0 : n - 1); i--)
	{
		if (backward)
			eb_append_reasons(&detail,
							  eb_schema_incompatibilities(new_schema, versions[i].schema),
							  versions[i].version, "new consumers reading old events");
		if (forward)
			eb_append_reasons(&detail,
							  eb_schema_incompatibilities_phrased(versions[i].schema, new_schema, true),
							  versions[i].version, "old consumers reading new events");
	}
	return detail.len > 0 ? detail.data : NULL;
}

/*
 * One registration or drop of a topic's schema at a time (the lock
 * alter_topic takes); then the topic is looked up again, as it may have
 * changed while we waited, and its ownership checked again.
 */
static EbTopic *
eb_schema_lock_topic(EbTopic *topic, const char *name)
{
	LockRelationOid(topic->relid, ShareUpdateExclusiveLock);
	eb_topic_cache_reset();
	topic = eb_topic_get(name, false);
	eb_check_topic_owner(topic);
	return topic;
}

/*
 * register_schema(topic text, schema jsonb, compatibility text) returns int
 */
Datum
eb_register_schema(PG_FUNCTION_ARGS)
{
	char	   *name = eb_arg_name(fcinfo, 0, "topic");
	Jsonb	   *schema;
	char	   *mode;
	EbTopic    *topic;
	MemoryContext check_cxt;
	MemoryContext caller_cxt = CurrentMemoryContext;
	EbSpi		spi;
	Oid			argtypes[4] = {INT4OID, INT4OID, JSONBOID, TEXTOID};
	Datum		values[4];
	EbVersion  *versions;
	int			nversions = 0;
	int32		max_version = 0;
	int32		version;
	char	   *reasons;
	uint64		i;
	bool		known = false;

	eb_check_writable("eventbus.register_schema()");
	eb_arg_not_null(fcinfo, 1, "schema");
	eb_arg_not_null(fcinfo, 2, "compatibility");
	schema = PG_GETARG_JSONB_P(1);
	mode = text_to_cstring(PG_GETARG_TEXT_PP(2));
	for (i = 0; i < lengthof(eb_compat_modes); i++)
		known |= strcmp(mode, eb_compat_modes[i]) == 0;
	if (!known)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown compatibility \"%s\"", mode),
				 errhint("Use backward, forward, full, backward_transitive, forward_transitive, full_transitive or none.")));

	topic = eb_topic_get(name, false);
	eb_check_topic_owner(topic);

	/* the schema's keywords and limits */
	check_cxt = AllocSetContextCreate(CurrentMemoryContext, "pg_eventbus schema check",
									  ALLOCSET_DEFAULT_SIZES);
	(void) eb_schema_compile(schema, check_cxt);
	MemoryContextDelete(check_cxt);

	topic = eb_schema_lock_topic(topic, name);

	eb_spi_begin(&spi, true);
	values[0] = Int32GetDatum(topic->topic_id);
	eb_spi_exec("SELECT version, schema, dropped_at IS NULL FROM eventbus.topic_schema "
				"WHERE topic_id = $1 ORDER BY version",
				1, argtypes, values, NULL, true);
	versions = MemoryContextAlloc(caller_cxt, sizeof(EbVersion) * (SPI_processed + 1));
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		int32		v = DatumGetInt32(SPI_getbinval(tup, desc, 1, &isnull));

		max_version = Max(max_version, v);
		if (!DatumGetBool(SPI_getbinval(tup, desc, 3, &isnull)))
			continue;
		versions[nversions].version = v;
		versions[nversions].schema = DatumGetJsonbPCopy(SPI_getbinval(tup, desc, 2, &isnull));
		nversions++;
	}

	/* the current schema again: its version */
	if (nversions > 0 &&
		DatumGetBool(DirectFunctionCall2(jsonb_eq, JsonbPGetDatum(schema),
										 JsonbPGetDatum(versions[nversions - 1].schema))))
	{
		eb_spi_end(&spi);
		PG_RETURN_INT32(versions[nversions - 1].version);
	}

	if (nversions > 0 && strcmp(mode, "none") != 0)
	{
		reasons = eb_check_compatibility(schema, versions, nversions, mode);
		if (reasons != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
					 errmsg("schema is not %s compatible with the schema of topic \"%s\"",
							mode, name),
					 errdetail("Incompatible: %s.", reasons),
					 errhint("Evolve the schema compatibly (docs/schemas.md), or register it with compatibility 'none', or call drop_schema() first to start a new line of versions.")));
	}

	version = max_version + 1;
	values[1] = Int32GetDatum(version);
	values[2] = JsonbPGetDatum(schema);
	values[3] = CStringGetTextDatum(mode);
	eb_spi_exec("INSERT INTO eventbus.topic_schema (topic_id, version, schema, compatibility) "
				"VALUES ($1, $2, $3, $4)",
				4, argtypes, values, NULL, false);
	eb_spi_end(&spi);
	eb_catalog_changed();
	PG_RETURN_INT32(version);
}

/*
 * drop_schema(topic text): stops validation; the versions stay, dropped.
 */
Datum
eb_drop_schema(PG_FUNCTION_ARGS)
{
	char	   *name = eb_arg_name(fcinfo, 0, "topic");
	EbTopic    *topic;
	EbSpi		spi;
	Oid			argtypes[1] = {INT4OID};
	Datum		values[1];
	uint64		dropped;

	eb_check_writable("eventbus.drop_schema()");
	topic = eb_topic_get(name, false);
	eb_check_topic_owner(topic);

	topic = eb_schema_lock_topic(topic, name);

	eb_spi_begin(&spi, true);
	values[0] = Int32GetDatum(topic->topic_id);
	eb_spi_exec("UPDATE eventbus.topic_schema SET dropped_at = pg_catalog.now() "
				"WHERE topic_id = $1 AND dropped_at IS NULL",
				1, argtypes, values, NULL, false);
	dropped = SPI_processed;
	eb_spi_end(&spi);
	if (dropped == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("topic \"%s\" has no schema", name),
				 errhint("Register one with eventbus.register_schema().")));
	eb_catalog_changed();
	PG_RETURN_VOID();
}
