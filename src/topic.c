/*-------------------------------------------------------------------------
 *
 * topic.c
 *	  SQL functions that create, alter, drop and describe topics, and the
 *	  SQL entry point of maintenance.
 *
 * Privileges: creating a topic needs CREATE on schema eventbus_data; the
 * creator becomes the topic's owner (eventbus.topic.owner).  The topic's
 * tables, the parent eventbus_data."<topic>" and its segments, belong to
 * the extension owner, so no other role can add indexes, triggers, rules,
 * constraints or columns to them, or write rows behind publish().  The
 * parent table's privileges are the topic's: INSERT to publish, SELECT to
 * read; the topic owner has both with grant option and grants them on.
 * Altering or dropping a topic needs the privileges of its owner.  Tables
 * and rows of the extension's own tables are created and written through
 * privileged.c once these checks have passed.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/relation.h"
#include "access/stratnum.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_authid.h"
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

#include "settings.h"
#include "catalog.h"
#include "compat.h"
#include "position.h"
#include "privileged.h"
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

/*
 * NULL, or a positive interval; zero means "no time limit" (*clear).  A
 * negative interval means nothing and is refused.
 */
static Interval *
eb_retention_arg(FunctionCallInfo fcinfo, int argno, bool *clear)
{
	Interval   *iv;
	int			sign;

	*clear = false;
	if (PG_ARGISNULL(argno))
		return NULL;
	iv = PG_GETARG_INTERVAL_P(argno);
	sign = eb_interval_sign(iv);
	if (sign < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("retention must be a positive interval, '0' or NULL"),
				 errdetail("Retention %s is negative.",
						   DatumGetCString(DirectFunctionCall1(interval_out,
															   IntervalPGetDatum(iv)))),
				 errhint("Use '0' to keep events without a time limit; NULL keeps them forever in create_topic() and leaves the retention unchanged in alter_topic().")));
	if (sign == 0)
	{
		*clear = true;
		return NULL;
	}
	return iv;
}

/* Altering, dropping and relaying need the privileges of the topic's owner. */
void
eb_check_topic_owner(EbTopic *topic)
{
	char	   *owner_name;

	if (has_privs_of_role(GetUserId(), topic->owner))
		return;
	owner_name = GetUserNameFromId(topic->owner, true);
	if (owner_name == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be owner of topic \"%s\"", topic->name),
				 errdetail("The role that owned topic \"%s\" was dropped; only a superuser may change or drop it.",
						   topic->name)));
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("must be owner of topic \"%s\"", topic->name),
			 errdetail("Topic \"%s\" is owned by role \"%s\"; only roles with its privileges may change it.",
					   topic->name, owner_name)));
}

/*
 * Who may see a topic's positions (topic_partitions() and the topics
 * view): a role that may read or publish to it, a role with the privileges
 * of its owner, and members of pg_monitor.
 */
void
eb_check_topic_visible(EbTopic *topic)
{
	Oid			userid = GetUserId();

	if (pg_class_aclcheck(topic->relid, userid, ACL_SELECT | ACL_INSERT) == ACLCHECK_OK ||
		has_privs_of_role(userid, topic->owner) ||
		has_privs_of_role(userid, ROLE_PG_MONITOR))
		return;
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("permission denied for topic \"%s\"", topic->name),
			 errhint("Seeing a topic needs SELECT or INSERT on %s.%s, the privileges of its owner, or membership in pg_monitor.",
					 EB_DATA_SCHEMA, quote_identifier(topic->name))));
}

static void eb_topic_create_owned(const char *name, int32 partitions,
								  Interval *retention, Oid owner);

static int64
eb_new_uid(void)
{
	int64		uid;

	if (!pg_strong_random(&uid, sizeof(uid)))
		uid = (int64) pg_prng_uint64(&pg_global_prng_state);
	return uid;
}

/*
 * The cluster's room for topics and partitions (eventbus.max_topics and
 * eventbus.max_partitions, in shared memory) is shared by every database.
 * So that one database cannot take all of it, each may have at most
 * eventbus.max_topics_per_database topics and
 * eventbus.max_partitions_per_database partitions across its topics (-1:
 * half of the cluster's room; 0: no limit of its own).  Checked when topics
 * are created or grow, against this database's catalog; the caller holds
 * the lock that serializes topic DDL.
 */
static int
eb_database_share(int setting, int cluster)
{
	if (setting < 0)
		return Max(cluster / 2, 1);
	return setting == 0 ? PG_INT32_MAX : setting;
}

static void
eb_check_database_quota(int32 more_topics, int32 more_partitions)
{
	EbSpi		spi;
	bool		isnull;
	int64		topics;
	int64		partitions;
	int			max_topics = eb_database_share(eb_max_topics_per_database, eb_max_topics);
	int			max_parts = eb_database_share(eb_max_partitions_per_database, eb_max_partitions);
	char	   *dbname = get_database_name(MyDatabaseId);

	eb_spi_begin(&spi, true);
	eb_spi_exec("SELECT count(*), coalesce(sum(partitions), 0)::int8 FROM eventbus.topic",
				0, NULL, NULL, NULL, false);
	topics = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	partitions = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	eb_spi_end(&spi);

	if (more_topics > 0 && topics + more_topics > max_topics)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("too many topics in database \"%s\"", dbname ? dbname : "?"),
				 errdetail("It has %lld topics; eventbus.max_topics_per_database allows %d per database, out of eventbus.max_topics = %d shared by all databases.",
						   (long long) topics, max_topics, eb_max_topics),
				 errhint("Drop topics that are no longer needed, or raise eventbus.max_topics_per_database and reload the configuration.")));
	if (more_partitions > 0 && partitions + more_partitions > max_parts)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("too many partitions in database \"%s\"", dbname ? dbname : "?"),
				 errdetail("Its topics have %lld partitions and would have %lld; eventbus.max_partitions_per_database allows %d per database, out of eventbus.max_partitions = %d shared by all databases.",
						   (long long) partitions, (long long) (partitions + more_partitions),
						   max_parts, eb_max_partitions),
				 errhint("Drop topics that are no longer needed, or raise eventbus.max_partitions_per_database and reload the configuration.")));
}

/*
 * Creates a topic owned by the current user; the caller has validated the
 * name and the arguments.  The topic's tables belong to the extension
 * owner; the current user gets SELECT and INSERT on the parent table.
 */
void
eb_topic_create(const char *name, int32 partitions, Interval *retention)
{
	Oid			datansp;

	datansp = eb_data_schema_oid();
	if (eb_namespace_aclcheck(datansp, GetUserId(), ACL_CREATE) != ACLCHECK_OK)
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
	eb_topic_create_owned(name, partitions, retention, GetUserId());
}

/*
 * A group's dead-letter topic, created when its first event is
 * dead-lettered: owned by the group's owner (so that the roles consuming
 * through the group may publish there), with the source topic's partition
 * count and retention.  Creating a group checked the right to name it (see
 * eb_create_group); no CREATE on eventbus_data is needed now, as the
 * tables are made by privileged.c from the validated name.  Returns the
 * topic, whoever created it.
 */
EbTopic *
eb_topic_ensure_dead_letter(const char *name, EbTopic *source, Oid owner)
{
	EbTopic    *dlq;
	EbSpi		spi;
	Oid			argtypes[1] = {INT4OID};
	Datum		values[1];
	Interval   *retention = NULL;
	bool		isnull;

	LockRelationOid(eb_catalog_relid("topic"), ShareUpdateExclusiveLock);
	eb_topic_cache_reset();
	dlq = eb_topic_get(name, true);
	if (dlq != NULL)
		return dlq;

	eb_spi_begin(&spi, true);
	values[0] = Int32GetDatum(source->topic_id);
	eb_spi_exec("SELECT retention FROM eventbus.topic WHERE topic_id = $1",
				1, argtypes, values, NULL, true);
	if (SPI_processed == 1)
	{
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		if (!isnull)
			retention = DatumGetIntervalP(SPI_datumTransfer(d, false, sizeof(Interval)));
	}
	eb_spi_end(&spi);

	eb_topic_create_owned(name, source->partitions, retention, owner);
	ereport(NOTICE,
			(errmsg("created dead-letter topic \"%s\" for topic \"%s\"", name, source->name),
			 errdetail("It is owned by role \"%s\", with the partitions and retention of topic \"%s\".",
					   GetUserNameFromId(owner, false), source->name)));
	return eb_topic_get(name, false);
}

/*
 * Creates a topic owned by owner; the caller has checked the right to, took
 * the topic DDL lock and found no topic of that name.
 */
static void
eb_topic_create_owned(const char *name, int32 partitions, Interval *retention, Oid owner)
{
	EbSpi		spi;
	int64		uid;
	int32		topic_id;
	Oid			relid;
	Oid			argtypes[6] = {TEXTOID, INT8OID, INT4OID, INTERVALOID, OIDOID, OIDOID};
	Datum		values[6];
	char		nulls[6] = {' ', ' ', ' ', ' ', ' ', ' '};
	bool		isnull;

	/* a dead-letter topic counts against the quota too */
	eb_check_database_quota(1, partitions);

	/* The tables belong to the extension owner; the caller owns the topic. */
	relid = eb_priv_create_topic_tables(name, owner);

	uid = eb_new_uid();
	eb_spi_begin(&spi, true);
	values[0] = CStringGetTextDatum(name);
	values[1] = Int64GetDatum(uid);
	values[2] = Int32GetDatum(partitions);
	if (retention)
		values[3] = IntervalPGetDatum(retention);
	else
		nulls[3] = 'n';
	values[4] = ObjectIdGetDatum(relid);
	values[5] = ObjectIdGetDatum(owner);
	eb_spi_exec("INSERT INTO eventbus.topic (topic, uid, partitions, retention, table_oid, owner) "
				"VALUES ($1, $2, $3, $4, $5::regclass, $6::regrole) RETURNING topic_id",
				6, argtypes, values, nulls, false);
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

	/* More partitions: serialized with other topic DDL for the quota. */
	if (!PG_ARGISNULL(1))
		LockRelationOid(eb_catalog_relid("topic"), ShareUpdateExclusiveLock);
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
		eb_check_database_quota(0, partitions - topic->partitions);
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
 * drop_topic(topic text, cascade boolean): drops the topic's tables and
 * catalog rows.  Objects of other roles that depend on the tables make it
 * fail, naming them, unless cascade is true (see privileged.c).
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
	bool		cascade = PG_NARGS() > 1 && !PG_ARGISNULL(1) && PG_GETARG_BOOL(1);

	/* force is new in 0.2.0: objects of 0.1.0 drop as they always did */
	bool		force = PG_NARGS() <= 2 || (!PG_ARGISNULL(2) && PG_GETARG_BOOL(2));

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

	if (!force)
	{
		char	   *users;
		MemoryContext upper = CurrentMemoryContext;

		eb_spi_begin(&spi, true);
		eb_spi_exec("SELECT string_agg(u, '; ' ORDER BY o, u) FROM ("
					" SELECT 1 AS o, 'consumer group ' || quote_ident(g.group_name) || ' (deleted with the topic)' AS u"
					" FROM eventbus.consumer_group g WHERE g.topic_id = $1"
					" UNION ALL"
					" SELECT 2, 'consumer group ' || quote_ident(g.group_name) || ' of topic ' || quote_ident(t.topic)"
					"  || ' (dead-letters into it)'"
					" FROM eventbus.consumer_group g JOIN eventbus.topic t USING (topic_id)"
					" WHERE g.dead_letter_topic = (SELECT topic FROM eventbus.topic WHERE topic_id = $1)"
					" AND g.topic_id <> $1"
					" UNION ALL"
					" SELECT 3, 'relay to Kafka topic ' || quote_ident(relay_to) || ' (stopped)'"
					" FROM eventbus.topic WHERE topic_id = $1 AND relay_to IS NOT NULL) s",
					1, argtypes, values, NULL, true);
		users = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
		if (users != NULL)
			users = MemoryContextStrdup(upper, users);
		eb_spi_end(&spi);
		if (users != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
					 errmsg("topic \"%s\" is in use", name),
					 errdetail("Dropping it would affect: %s.", users),
					 errhint("Delete the groups and stop the relay first, or pass force => true.")));
	}

	eb_priv_drop_topic_tables(name, topic->relid, cascade);
	eb_spi_begin(&spi, true);
	eb_spi_exec("DELETE FROM eventbus.topic WHERE topic_id = $1",
				1, argtypes, values, NULL, false);

	/*
	 * The relay's settings and decisions for the topic go with it (its
	 * mapping, relay_to, went with the row): a topic created again under
	 * the name starts without them.
	 */
	eb_spi_exec("DELETE FROM eventbus.relay_policy WHERE topic_id = $1",
				1, argtypes, values, NULL, false);
	eb_spi_exec("DELETE FROM eventbus.relay_partitioning WHERE topic_id = $1",
				1, argtypes, values, NULL, false);
	if (OidIsValid(get_relname_relid("relay_format", eb_schema_oid(false))))
		eb_spi_exec("DELETE FROM eventbus.relay_format WHERE topic_id = $1",
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
	eb_check_topic_visible(topic);
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

typedef struct EbMaintTopic
{
	const char *name;
	EbMaintOut *out;
} EbMaintTopic;

static void
eb_maint_one(void *arg)
{
	EbMaintTopic *mt = (EbMaintTopic *) arg;

	eb_maintain_topic(mt->name, eb_maint_to_tuplestore, mt->out);
}

/*
 * run_maintenance() returns setof (topic, action, segment, detail): one
 * maintenance pass over the topics whose owner's privileges the caller has
 * (all for superusers).
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
		EbMaintTopic mt;
		ErrorData  *edata;

		if (topic == NULL || !has_privs_of_role(GetUserId(), topic->owner))
			continue;

		/* each topic in a subtransaction: a failure is reported, not fatal */
		mt.name = name;
		mt.out = &out;
		edata = eb_run_in_subxact(eb_maint_one, &mt);
		if (edata != NULL)
		{
			eb_maint_to_tuplestore(&out, name, "failed", 0, edata->message);
			FreeErrorData(edata);
		}
	}
	return (Datum) 0;
}
