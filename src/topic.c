/*-------------------------------------------------------------------------
 *
 * topic.c
 *	  SQL functions that create, alter, drop and describe topics, and the
 *	  SQL entry point of maintenance.
 *
 * Privileges: creating a topic needs CREATE on schema eventbus_data; the
 * creator owns the topic's parent table eventbus_data."<topic>", and that
 * table's privileges are the topic's: INSERT to publish, SELECT to read.
 * Altering or dropping needs ownership.  Rows of the extension's own tables
 * are written as the extension owner once these checks have passed.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/relation.h"
#include "access/stratnum.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/pg_prng.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "pg_eventbus.h"
#include "catalog.h"
#include "position.h"
#include "segment.h"
#include "topic.h"
#include "util.h"

PG_FUNCTION_INFO_V1(eb_create_topic);
PG_FUNCTION_INFO_V1(eb_alter_topic);
PG_FUNCTION_INFO_V1(eb_drop_topic);
PG_FUNCTION_INFO_V1(eb_topic_partitions);
PG_FUNCTION_INFO_V1(eb_run_maintenance);

static void
eb_check_partition_count(int32 partitions)
{
	if (partitions < 1 || partitions > EB_MAX_PARTITIONS_PER_TOPIC)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("partitions must be between 1 and %d", EB_MAX_PARTITIONS_PER_TOPIC)));
}

/* NULL, or a positive interval; zero or less means "keep forever". */
static Interval *
eb_retention_arg(FunctionCallInfo fcinfo, int argno, bool *clear)
{
	Interval   *iv;

	*clear = false;
	if (PG_ARGISNULL(argno))
		return NULL;
	iv = PG_GETARG_INTERVAL_P(argno);
	if (eb_interval_sign(iv) <= 0)
	{
		*clear = true;
		return NULL;
	}
	return iv;
}

void
eb_check_topic_owner(EbTopic *topic)
{
	if (!pg_class_ownercheck(topic->relid, GetUserId()))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be owner of topic \"%s\"", topic->name),
				 errdetail("The owner of table %s.%s owns the topic.",
						   EB_DATA_SCHEMA, quote_identifier(topic->name))));
}

static int64
eb_new_uid(void)
{
	int64		uid;

	if (!pg_strong_random(&uid, sizeof(uid)))
		uid = (int64) pg_prng_uint64(&pg_global_prng_state);
	return uid;
}

/*
 * Creates a topic owned by the current user; the caller has validated the
 * name and the arguments.
 */
void
eb_topic_create(const char *name, int32 partitions, Interval *retention)
{
	Oid			datansp;
	EbSpi		spi;
	int64		uid;
	int32		topic_id;
	Oid			argtypes[5] = {TEXTOID, INT8OID, INT4OID, INTERVALOID, TEXTOID};
	Datum		values[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};
	bool		isnull;

	datansp = eb_data_schema_oid();
	if (pg_namespace_aclcheck(datansp, GetUserId(), ACL_CREATE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to create topic \"%s\"", name),
				 errhint("Creating topics needs CREATE on schema %s: GRANT CREATE ON SCHEMA %s TO role;",
						 EB_DATA_SCHEMA, EB_DATA_SCHEMA)));

	/* Serialize topic DDL, then check for an existing topic. */
	LockRelationOid(eb_catalog_relid("topic"), ShareUpdateExclusiveLock);
	eb_topic_cache_reset();
	if (eb_topic_get(name, true) != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("topic \"%s\" already exists", name)));

	/* The parent table is created as the caller, who then owns the topic. */
	eb_spi_begin(&spi, false);
	eb_spi_exec(psprintf("CREATE TABLE %s.%s ("
						 "partition pg_catalog.int4 NOT NULL, "
						 "position pg_catalog.int8 NOT NULL, "
						 "event_id pg_catalog.uuid NOT NULL, "
						 "created_at pg_catalog.timestamptz NOT NULL, "
						 "key pg_catalog.text, "
						 "value pg_catalog.jsonb NOT NULL, "
						 "headers pg_catalog.jsonb, "
						 "idempotency_key pg_catalog.text, "
						 "CONSTRAINT use_eventbus_publish CHECK (false) NO INHERIT"
						 ") USING heap",
						 EB_DATA_SCHEMA, quote_identifier(name)),
				0, NULL, NULL, NULL, false);
	eb_spi_exec(psprintf("COMMENT ON TABLE %s.%s IS %s", EB_DATA_SCHEMA,
						 quote_identifier(name),
						 quote_literal_cstr(psprintf("Events of topic %s, in segment tables that inherit from this one. Publish with eventbus.publish(); grant INSERT to publish and SELECT to read.", name))),
				0, NULL, NULL, NULL, false);
	eb_spi_end(&spi);

	uid = eb_new_uid();
	eb_spi_begin(&spi, true);
	values[0] = CStringGetTextDatum(name);
	values[1] = Int64GetDatum(uid);
	values[2] = Int32GetDatum(partitions);
	if (retention)
		values[3] = IntervalPGetDatum(retention);
	else
		nulls[3] = 'n';
	values[4] = CStringGetTextDatum(psprintf("%s.%s", EB_DATA_SCHEMA, quote_identifier(name)));
	eb_spi_exec("INSERT INTO eventbus.topic (topic, uid, partitions, retention, table_oid) "
				"VALUES ($1, $2, $3, $4, $5::regclass) RETURNING topic_id",
				5, argtypes, values, nulls, false);
	topic_id = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	eb_spi_end(&spi);

	eb_segment_create(topic_id, name, 1, true, partitions);
	eb_segment_create(topic_id, name, 2, false, partitions);

	eb_catalog_changed();
	eb_catalog_forget_at_abort(uid, partitions);
}

/*
 * create_topic(topic text, partitions int, retention interval)
 */
Datum
eb_create_topic(PG_FUNCTION_ARGS)
{
	char	   *name = eb_arg_name(fcinfo, 0, "topic");
	int32		partitions;
	Interval   *retention;
	bool		clear;

	eb_require_shmem();
	eb_check_writable("eventbus.create_topic()");
	eb_arg_not_null(fcinfo, 1, "partitions");
	partitions = PG_GETARG_INT32(1);
	eb_check_partition_count(partitions);
	retention = eb_retention_arg(fcinfo, 2, &clear);
	eb_topic_create(name, partitions, retention);
	PG_RETURN_VOID();
}

/*
 * alter_topic(topic text, partitions int, retention interval)
 */
Datum
eb_alter_topic(PG_FUNCTION_ARGS)
{
	char	   *name = eb_arg_name(fcinfo, 0, "topic");
	EbTopic    *topic;
	bool		clear;
	Interval   *retention;
	EbSpi		spi;
	Oid			argtypes[4] = {INT4OID, INT4OID, INTERVALOID, BOOLOID};
	Datum		values[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};

	eb_check_writable("eventbus.alter_topic()");
	topic = eb_topic_get(name, false);
	eb_check_topic_owner(topic);
	retention = eb_retention_arg(fcinfo, 2, &clear);

	/* Conflicts with maintenance and other ALTERs, not with publishers. */
	LockRelationOid(topic->relid, ShareUpdateExclusiveLock);
	eb_topic_cache_reset();
	topic = eb_topic_get(name, false);
	eb_check_topic_owner(topic);

	if (!PG_ARGISNULL(1))
	{
		int32		partitions = PG_GETARG_INT32(1);

		eb_check_partition_count(partitions);
		if (partitions < topic->partitions)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("partitions can only grow"),
					 errdetail("Topic \"%s\" has %d partitions; removing partitions would lose their events.",
							   name, topic->partitions)));
		values[1] = Int32GetDatum(partitions);
	}
	else
		nulls[1] = 'n';
	values[0] = Int32GetDatum(topic->topic_id);
	if (retention)
		values[2] = IntervalPGetDatum(retention);
	else
		nulls[2] = 'n';
	values[3] = BoolGetDatum(clear);

	eb_spi_begin(&spi, true);
	eb_spi_exec("UPDATE eventbus.topic SET "
				"partitions = coalesce($2, partitions), "
				"retention = CASE WHEN $4 THEN NULL ELSE coalesce($3, retention) END "
				"WHERE topic_id = $1",
				4, argtypes, values, nulls, false);
	eb_spi_end(&spi);
	eb_catalog_changed();
	PG_RETURN_VOID();
}

/*
 * drop_topic(topic text): drops the topic's tables and catalog rows.
 */
Datum
eb_drop_topic(PG_FUNCTION_ARGS)
{
	char	   *name = eb_arg_name(fcinfo, 0, "topic");
	EbTopic    *topic;
	EbSpi		spi;
	Oid			argtypes[1] = {INT4OID};
	Datum		values[1];
	int64		uid;
	int32		partitions;

	eb_check_writable("eventbus.drop_topic()");
	topic = eb_topic_get(name, false);
	eb_check_topic_owner(topic);

	/* serialize with other topic DDL, then look again */
	LockRelationOid(eb_catalog_relid("topic"), ShareUpdateExclusiveLock);
	eb_topic_cache_reset();
	topic = eb_topic_get(name, false);
	eb_check_topic_owner(topic);
	uid = topic->uid;
	partitions = topic->partitions;
	values[0] = Int32GetDatum(topic->topic_id);

	eb_spi_begin(&spi, true);
	/* the segment tables go with the parent: no need to list them */
	(void) set_config_option("client_min_messages", "warning", PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	eb_spi_exec(psprintf("DROP TABLE %s.%s CASCADE", EB_DATA_SCHEMA, quote_identifier(name)),
				0, NULL, NULL, NULL, false);
	eb_spi_exec("DELETE FROM eventbus.topic WHERE topic_id = $1",
				1, argtypes, values, NULL, false);
	eb_spi_end(&spi);

	eb_catalog_changed();
	eb_catalog_forget_at_commit(uid, partitions);
	PG_RETURN_VOID();
}

/*
 * topic_partitions(topic text) returns setof (partition, first_position,
 * end_position): retained range of each partition; end_position is the
 * position the next event will get.
 */
Datum
eb_topic_partitions(PG_FUNCTION_ARGS)
{
	char	   *name = eb_arg_name(fcinfo, 0, "topic");
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	EbTopic    *topic;
	int32		p;

	topic = eb_topic_get(name, false);
	InitMaterializedSRF(fcinfo, 0);
	for (p = 0; p < topic->partitions; p++)
	{
		Datum		values[3];
		bool		nulls[3] = {false, false, false};
		int64		end;
		int64		first;

		end = eb_end_position(topic, p);
		first = eb_first_position(topic, p);
		values[0] = Int32GetDatum(p);
		values[1] = Int64GetDatum(first >= 0 ? first : end);
		values[2] = Int64GetDatum(end);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

typedef struct EbMaintOut
{
	ReturnSetInfo *rsinfo;
} EbMaintOut;

static void
eb_maint_to_tuplestore(void *arg, const char *topic, const char *action,
					   int32 segment, const char *detail)
{
	EbMaintOut *out = (EbMaintOut *) arg;
	Datum		values[4];
	bool		nulls[4] = {false, false, false, false};

	values[0] = CStringGetTextDatum(topic);
	values[1] = CStringGetTextDatum(action);
	values[2] = Int32GetDatum(segment);
	nulls[2] = segment == 0;
	if (detail)
		values[3] = CStringGetTextDatum(detail);
	else
		nulls[3] = true;
	tuplestore_putvalues(out->rsinfo->setResult, out->rsinfo->setDesc, values, nulls);
}

/*
 * run_maintenance() returns setof (topic, action, segment, detail): one
 * maintenance pass over the topics the caller owns (all for superusers).
 * The background worker runs the same pass periodically.
 */
Datum
eb_run_maintenance(PG_FUNCTION_ARGS)
{
	EbMaintOut	out;
	List	   *names;
	ListCell   *lc;

	eb_require_shmem();
	eb_check_writable("eventbus.run_maintenance()");
	InitMaterializedSRF(fcinfo, 0);
	out.rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	names = eb_topic_names();
	foreach(lc, names)
	{
		char	   *name = lfirst(lc);
		EbTopic    *topic = eb_topic_get(name, true);
		MemoryContext oldcontext = CurrentMemoryContext;
		ResourceOwner oldowner = CurrentResourceOwner;

		if (topic == NULL || !pg_class_ownercheck(topic->relid, GetUserId()))
			continue;

		/* each topic in a subtransaction: a failure is reported, not fatal */
		BeginInternalSubTransaction(NULL);
		MemoryContextSwitchTo(oldcontext);
		PG_TRY();
		{
			eb_maintain_topic(name, eb_maint_to_tuplestore, &out);
			ReleaseCurrentSubTransaction();
			MemoryContextSwitchTo(oldcontext);
			CurrentResourceOwner = oldowner;
		}
		PG_CATCH();
		{
			ErrorData  *edata;

			MemoryContextSwitchTo(oldcontext);
			edata = CopyErrorData();
			FlushErrorState();
			RollbackAndReleaseCurrentSubTransaction();
			MemoryContextSwitchTo(oldcontext);
			CurrentResourceOwner = oldowner;
			eb_maint_to_tuplestore(&out, name, "failed", 0, edata->message);
			FreeErrorData(edata);
		}
		PG_END_TRY();
	}
	return (Datum) 0;
}
