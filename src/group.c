/*-------------------------------------------------------------------------
 *
 * group.c
 *	  Consumer groups: creating, altering, deleting, seeking, status.
 *
 * A group consumes a topic; its position in each partition is a row of
 * eventbus.group_partition: committed_position is the last position done
 * (-1: nothing yet).  Starting at 'latest' means after every event
 * published before the group was created, committed or not (Kafka's log end
 * offset); 'earliest' means from the first retained event; a timestamp
 * means from the first event published at or after it.
 *
 * Privileges: creating a group and consuming through it need SELECT on the
 * topic; the creator owns the group, and altering, seeking, pausing,
 * redriving, purging or deleting it need the privileges of its owner.
 *
 * Dead letters: nack() records each event it dead-letters in
 * eventbus.dead_letter (consume.c); redrive() moves them back to the group
 * as retries, purge_dead_letters() forgets them.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "settings.h"
#include "compat.h"
#include "catalog.h"
#include "group.h"
#include "position.h"
#include "read.h"
#include "topic.h"
#include "util.h"

PG_FUNCTION_INFO_V1(eb_create_group);
PG_FUNCTION_INFO_V1(eb_alter_group);
PG_FUNCTION_INFO_V1(eb_delete_group);
PG_FUNCTION_INFO_V1(eb_seek_all);
PG_FUNCTION_INFO_V1(eb_seek_position);
PG_FUNCTION_INFO_V1(eb_group_status);
PG_FUNCTION_INFO_V1(eb_group_status_exact);
PG_FUNCTION_INFO_V1(eb_pause_group);
PG_FUNCTION_INFO_V1(eb_resume_group);
PG_FUNCTION_INFO_V1(eb_redrive);
PG_FUNCTION_INFO_V1(eb_purge_dead_letters);

#define EB_MAX_ATTEMPTS_LIMIT 1000

typedef enum EbStartKind
{
	EB_START_EARLIEST,
	EB_START_LATEST,
	EB_START_TIME
} EbStartKind;

static SPIPlanPtr plan_lookup = NULL;

static void eb_group_member_share(EbGroup *g, EbTopic *topic, const char *member,
								  EbPartState *states);

/*
 * This database session, as recorded with what a lease holder was handed: a
 * member that comes back in another session (it restarted) gets its
 * uncommitted events again.
 */
char *
eb_session_id(void)
{
	return psprintf("%d/" INT64_FORMAT, MyProcPid, (int64) MyStartTimestamp);
}

/*
 * Looks a group up; fresh: with a new snapshot (in READ COMMITTED), to see
 * a delete that committed after the statement started.
 */
/*
 * Are the group tables those of 0.2.0 (paused, dead_letter, group_member)?
 * The library also serves 0.1.0 objects until ALTER EXTENSION ... UPDATE:
 * then groups cannot be paused, dead letters are not recorded for redrive
 * and leases are not balanced.
 */
bool
eb_groups_catalog_v2(void)
{
	return get_attnum(eb_catalog_relid("consumer_group"), "paused") != InvalidAttrNumber;
}

static void
eb_group_lookup_ext(const char *group_name, EbTopic *topic, EbGroup *g, bool fresh)
{
	static SPIPlanPtr plan_lookup_v1 = NULL;
	Oid			argtypes[2] = {TEXTOID, INT4OID};
	Datum		values[2];
	SPIPlanPtr	plan;
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;

	if (eb_groups_catalog_v2())
		plan = eb_spi_plan(&plan_lookup,
						   "SELECT group_id, owner::oid, max_attempts, dead_letter_topic, paused "
						   "FROM eventbus.consumer_group WHERE group_name = $1 AND topic_id = $2",
						   2, argtypes);
	else
		plan = eb_spi_plan(&plan_lookup_v1,
						   "SELECT group_id, owner::oid, max_attempts, dead_letter_topic, false "
						   "FROM eventbus.consumer_group WHERE group_name = $1 AND topic_id = $2",
						   2, argtypes);
	values[0] = CStringGetTextDatum(group_name);
	values[1] = Int32GetDatum(topic->topic_id);
	eb_spi_run(plan, values, NULL, !fresh);
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("consumer group \"%s\" does not exist on topic \"%s\"",
						group_name, topic->name),
				 errhint("Create it with eventbus.create_group().")));
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	g->group_id = DatumGetInt32(SPI_getbinval(tup, desc, 1, &isnull));
	g->owner = DatumGetObjectId(SPI_getbinval(tup, desc, 2, &isnull));
	g->max_attempts = DatumGetInt32(SPI_getbinval(tup, desc, 3, &isnull));
	g->dead_letter_topic = SPI_getvalue(tup, desc, 4);
	g->paused = DatumGetBool(SPI_getbinval(tup, desc, 5, &isnull));
}

void
eb_group_lookup(const char *group_name, EbTopic *topic, EbGroup *g)
{
	eb_group_lookup_ext(group_name, topic, g, false);
}

/*
 * The group lock: a heavyweight lock per group, in the advisory lock space
 * with field4 = 4 (advisory locks taken with SQL use 1 and 2, idempotent
 * publishing 3), so it shows in pg_locks as an advisory lock on
 * (database, group_id, 0).  Consuming through a group (poll, commit, nack,
 * release, wait's check) holds it in share mode until the end of the
 * transaction; delete_group() takes it in exclusive mode before deleting.
 * A delete therefore waits for the transactions using the group, and calls
 * that come after it wait for it and then find the group gone (42704),
 * never a deadlock or a foreign-key error from the group's tables.
 *
 * Returns true if the lock was taken now, false if this transaction held
 * it already.
 */
bool
eb_group_lock(int32 group_id, bool exclusive)
{
	LOCKTAG		tag;

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, (uint32) group_id, 0, 4);
	return LockAcquire(&tag, exclusive ? ExclusiveLock : ShareLock, false, false)
		!= LOCKACQUIRE_ALREADY_HELD;
}

void
eb_group_unlock(int32 group_id, bool exclusive)
{
	LOCKTAG		tag;

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, (uint32) group_id, 0, 4);
	(void) LockRelease(&tag, exclusive ? ExclusiveLock : ShareLock, false);
}

/*
 * Looks a group up and takes its lock (see eb_group_lock), then looks it up
 * again with a fresh snapshot: a delete the lock waited for is seen.
 * Returns what eb_group_lock returned for the group's lock.
 */
bool
eb_group_lookup_locked(const char *group_name, EbTopic *topic, EbGroup *g,
					   bool exclusive)
{
	int32		locked = -1;
	bool		taken = false;

	eb_group_lookup_ext(group_name, topic, g, false);
	for (;;)
	{
		taken = eb_group_lock(g->group_id, exclusive) || (locked >= 0 && taken);
		locked = g->group_id;
		eb_group_lookup_ext(group_name, topic, g, true);
		if (g->group_id == locked)
			return taken;
		/* deleted and created again meanwhile: lock the new one too */
	}
}

/*
 * Partitions added to the topic after the group was created are read from
 * their beginning, so that no event of a new partition is missed.
 */
void
eb_group_ensure_partitions(EbGroup *g, EbTopic *topic)
{
	static SPIPlanPtr plan = NULL;
	static SPIPlanPtr plan_v1 = NULL;
	Oid			argtypes[2] = {INT4OID, INT4OID};
	Datum		values[2];
	SPIPlanPtr	run;

	/* consumed (group_stats) counts from the start, -1 */
	if (eb_groups_catalog_v2())
		run = eb_spi_plan(&plan,
					"INSERT INTO eventbus.group_partition "
					"(group_id, partition, committed_position, fetched_position, consumed_base) "
					"SELECT $1, p, -1, -1, -1 FROM generate_series(0, $2 - 1) p "
					"WHERE NOT EXISTS (SELECT 1 FROM eventbus.group_partition gp "
					"                  WHERE gp.group_id = $1 AND gp.partition = p) "
					"ON CONFLICT DO NOTHING",
					2, argtypes);
	else
		run = eb_spi_plan(&plan_v1,
					"INSERT INTO eventbus.group_partition "
					"(group_id, partition, committed_position, fetched_position) "
					"SELECT $1, p, -1, -1 FROM generate_series(0, $2 - 1) p "
					"WHERE NOT EXISTS (SELECT 1 FROM eventbus.group_partition gp "
					"                  WHERE gp.group_id = $1 AND gp.partition = p) "
					"ON CONFLICT DO NOTHING",
					2, argtypes);
	values[0] = Int32GetDatum(g->group_id);
	values[1] = Int32GetDatum(topic->partitions);
	eb_spi_run(run, values, NULL, false);
}

/*
 * Where each partition of the group stands for member (NULL: none), as
 * poll() and wait() both see it; topic->partitions entries.  Without
 * add_missing (read-only, with the active snapshot), a partition the group
 * has no row for yet (the topic grew) counts from the start, as
 * eb_group_ensure_partitions() will record it, and for a member, the
 * partitions its next poll() would not claim under balanced leases count
 * as held by another (wait() returns true only for what that member may
 * poll).  With add_missing, the missing rows are added and read again; a
 * row this snapshot still cannot see counts as held by another member.
 */
EbPartState *
eb_group_partition_states(EbGroup *g, EbTopic *topic, const char *member,
						  bool add_missing)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[3] = {INT4OID, TEXTOID, TEXTOID};
	Datum		values[3];
	char		nulls[3] = {' ', ' ', ' '};
	EbPartState *states;
	uint64		r;
	int32		p;

	values[0] = Int32GetDatum(g->group_id);
	if (member)
		values[1] = CStringGetTextDatum(member);
	else
		nulls[1] = 'n';
	values[2] = CStringGetTextDatum(eb_session_id());
	eb_spi_plan(&plan,
				"SELECT partition, committed_position, fetched_position, "
				"  coalesce(member IS DISTINCT FROM $2 AND lease_until > clock_timestamp(), false), "
				"  coalesce(member = $2 AND lease_until > clock_timestamp() "
				"           AND fetched_session = $3, false), "
				"  coalesce(member = $2 AND lease_until > clock_timestamp(), false) "
				"FROM eventbus.group_partition WHERE group_id = $1",
				3, argtypes);
	/* not read-only when adding: must see the rows it adds */
	eb_spi_run(plan, values, nulls, !add_missing);
	if (add_missing && SPI_processed < (uint64) topic->partitions)
	{
		eb_group_ensure_partitions(g, topic);
		eb_spi_run(plan, values, nulls, false);
	}

	states = palloc(sizeof(EbPartState) * topic->partitions);
	for (p = 0; p < topic->partitions; p++)
	{
		states[p].committed = states[p].fetched = -1;
		states[p].held_by_other = add_missing;
		states[p].mine = false;
		states[p].leased_to_me = false;
	}
	for (r = 0; r < SPI_processed; r++)
	{
		HeapTuple	tup = SPI_tuptable->vals[r];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;

		p = DatumGetInt32(SPI_getbinval(tup, desc, 1, &isnull));
		if (p < 0 || p >= topic->partitions)
			continue;
		states[p].committed = DatumGetInt64(SPI_getbinval(tup, desc, 2, &isnull));
		states[p].fetched = DatumGetInt64(SPI_getbinval(tup, desc, 3, &isnull));
		states[p].held_by_other = DatumGetBool(SPI_getbinval(tup, desc, 4, &isnull));
		states[p].mine = DatumGetBool(SPI_getbinval(tup, desc, 5, &isnull));
		states[p].leased_to_me = DatumGetBool(SPI_getbinval(tup, desc, 6, &isnull));
	}
	if (member != NULL && !add_missing && eb_groups_catalog_v2())
		eb_group_member_share(g, topic, member, states);
	return states;
}

/*
 * For wait(member): what the member's next poll() may deliver under
 * balanced leases (see eb_balance_leases in consume.c).  That poll counts
 * the member among the group's members, gives up the partitions above its
 * share of ceil(partitions / members) that it holds with nothing handed
 * out uncommitted (highest numbers first), and then claims partitions no
 * one holds only while it holds fewer than its share.  Partitions it
 * could not read then are marked held_by_other.
 */
static void
eb_group_member_share(EbGroup *g, EbTopic *topic, const char *member,
					  EbPartState *states)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[2] = {INT4OID, TEXTOID};
	Datum		values[2];
	bool		isnull;
	int64		members;
	int32		share;
	int32		held = 0;
	int32		p;

	values[0] = Int32GetDatum(g->group_id);
	values[1] = CStringGetTextDatum(member);
	eb_spi_plan(&plan,
				"SELECT 1 + count(*) FROM eventbus.group_member "
				"WHERE group_id = $1 AND member <> $2 AND expires_at > clock_timestamp()",
				2, argtypes);
	eb_spi_run(plan, values, NULL, true);
	members = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	share = (int32) ((topic->partitions + members - 1) / members);

	for (p = 0; p < topic->partitions; p++)
		held += states[p].leased_to_me ? 1 : 0;
	/* the clean partitions above its share are given up */
	for (p = topic->partitions - 1; p >= 0 && held > share; p--)
	{
		if (states[p].leased_to_me && states[p].fetched <= states[p].committed)
		{
			states[p].leased_to_me = states[p].mine = false;
			states[p].held_by_other = true;
			held--;
		}
	}
	if (held < share)
		return;
	/* at its share: partitions no one holds are left to the others */
	for (p = 0; p < topic->partitions; p++)
	{
		if (!states[p].leased_to_me)
			states[p].held_by_other = true;
	}
}

/*
 * Consuming through a group (poll, commit, nack, release, wait) needs the
 * privileges of its owner: one team's group is not another's to move.
 */
void
eb_check_group_member(EbGroup *g, const char *group_name, Oid caller)
{
	if (!has_privs_of_role(caller, g->owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to consume through group \"%s\"", group_name),
				 errdetail("The group is owned by role \"%s\".",
						   GetUserNameFromId(g->owner, false)),
				 errhint("Grant that role to the consuming role: GRANT %s TO role;",
						 quote_identifier(GetUserNameFromId(g->owner, false)))));
}

static void
eb_check_group_owner(EbGroup *g, const char *group_name, Oid caller)
{
	if (!has_privs_of_role(caller, g->owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be owner of consumer group \"%s\"", group_name),
				 errdetail("The group is owned by role \"%s\".",
						   GetUserNameFromId(g->owner, false))));
}

/*
 * A timestamp in start_at, or false if the text is none.  Runs the input
 * function in a subtransaction so that a data error becomes an answer.
 */
static bool
eb_parse_timestamp(const char *s, TimestampTz *ts)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	volatile bool ok = true;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		*ts = DatumGetTimestampTz(DirectFunctionCall3(timestamptz_in, CStringGetDatum(s),
													  ObjectIdGetDatum(InvalidOid),
													  Int32GetDatum(-1)));
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
		if (ERRCODE_TO_CATEGORY(edata->sqlerrcode) != ERRCODE_DATA_EXCEPTION)
			ReThrowError(edata);
		FreeErrorData(edata);
		ok = false;
	}
	PG_END_TRY();
	return ok;
}

static EbStartKind
eb_parse_start(FunctionCallInfo fcinfo, int argno, TimestampTz *ts)
{
	char	   *s;

	eb_arg_not_null(fcinfo, argno, "start_at");
	s = text_to_cstring(PG_GETARG_TEXT_PP(argno));
	if (pg_strcasecmp(s, "earliest") == 0)
		return EB_START_EARLIEST;
	if (pg_strcasecmp(s, "latest") == 0)
		return EB_START_LATEST;
	if (!eb_parse_timestamp(s, ts))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid start_at: \"%s\"", s),
				 errdetail("start_at is 'earliest', 'latest' or a timestamp with time zone.")));
	return EB_START_TIME;
}

/*
 * The committed position that makes a group start where asked.  'latest'
 * is the read horizon (Kafka's last stable offset), not the end position:
 * an event of a transaction still open now is delivered once it commits.
 */
static int64
eb_start_committed(EbTopic *topic, int32 partition, EbStartKind kind, TimestampTz ts)
{
	int64		pos;

	switch (kind)
	{
		case EB_START_EARLIEST:
			return -1;
		case EB_START_TIME:
			pos = eb_position_at_time(topic, partition, ts);
			if (pos >= 0)
				return pos - 1;
			pg_fallthrough;
		case EB_START_LATEST:
			return eb_read_horizon(topic, partition, NULL) - 1;
	}
	return -1;					/* keep compiler quiet */
}

static Datum
eb_start_positions(EbTopic *topic, EbStartKind kind, TimestampTz ts)
{
	Datum	   *elems = palloc(sizeof(Datum) * topic->partitions);
	int32		p;

	for (p = 0; p < topic->partitions; p++)
		elems[p] = Int64GetDatum(eb_start_committed(topic, p, kind, ts));
	return PointerGetDatum(construct_array(elems, topic->partitions, INT8OID, 8,
										   FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

/*
 * Is the topic a dead-letter topic: named <topic>.dlq, or the dead-letter
 * topic of a group?  A group on it gets no dead-letter topic of its own.
 */
static bool
eb_is_dead_letter_topic(const char *topic_name)
{
	EbSpi		spi;
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1];
	bool		result;
	size_t		len = strlen(topic_name);

	if (len > 4 && strcmp(topic_name + len - 4, ".dlq") == 0)
		return true;
	eb_spi_begin(&spi, true);
	values[0] = CStringGetTextDatum(topic_name);
	eb_spi_exec("SELECT 1 FROM eventbus.consumer_group WHERE dead_letter_topic = $1 LIMIT 1",
				1, argtypes, values, NULL, true);
	result = SPI_processed > 0;
	eb_spi_end(&spi);
	return result;
}

/*
 * create_group(group_name, topic, start_at, max_attempts, dead_letter_topic)
 */
Datum
eb_create_group(PG_FUNCTION_ARGS)
{
	char	   *group_name = eb_arg_name(fcinfo, 0, "group");
	char	   *topic_name = eb_arg_name(fcinfo, 1, "topic");
	TimestampTz ts = 0;
	EbStartKind kind;
	int32		max_attempts;
	char	   *dlq;
	EbTopic    *topic;
	EbTopic    *dlq_topic;
	EbSpi		spi;
	Oid			argtypes[5] = {TEXTOID, INT4OID, OIDOID, INT4OID, TEXTOID};
	Datum		values[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};
	bool		v2;
	Oid			pargtypes[2] = {INT4OID, INT8ARRAYOID};
	Datum		pvalues[2];
	Datum		starts;
	bool		isnull;

	eb_check_writable("eventbus.create_group()");
	kind = eb_parse_start(fcinfo, 2, &ts);
	eb_arg_not_null(fcinfo, 3, "max_attempts");
	max_attempts = PG_GETARG_INT32(3);
	if (max_attempts < 1 || max_attempts > EB_MAX_ATTEMPTS_LIMIT)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_attempts must be between 1 and %d", EB_MAX_ATTEMPTS_LIMIT)));
	v2 = eb_groups_catalog_v2();

	if (PG_ARGISNULL(4) && v2 && eb_is_dead_letter_topic(topic_name))
		dlq = NULL;				/* no <dlq>.dlq: failed events wait for redrive */
	else if (PG_ARGISNULL(4))
	{
		dlq = psprintf("%s.dlq", topic_name);
		if (strlen(dlq) > EB_TOPIC_NAME_MAX)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_NAME),
					 errmsg("default dead-letter topic name \"%s\" is too long", dlq),
					 errhint("Pass dead_letter_topic with a name of at most %d characters.",
							 EB_TOPIC_NAME_MAX)));
	}
	else
		dlq = eb_arg_name(fcinfo, 4, "topic");
	if (dlq != NULL && strcmp(dlq, topic_name) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a topic cannot be its own dead-letter topic")));

	topic = eb_topic_get(topic_name, false);
	eb_check_read_privilege(topic);

	/*
	 * Take the lock of topic DDL (it conflicts with itself) before looking
	 * for the dead-letter topic: two groups of one topic then do not both
	 * create it, and a transaction that creates a topic and then a group
	 * takes the same lock in the same order as this one.
	 */
	LockRelationOid(eb_catalog_relid("topic"), ShareUpdateExclusiveLock);
	eb_topic_cache_reset();

	/*
	 * An existing dead-letter topic must accept the creator's events.  A
	 * missing one is created when the first event is dead-lettered, owned
	 * by the group's owner (eb_topic_ensure_dead_letter): the default name
	 * derives from a topic the creator may read, another name needs the
	 * right to create topics now.  With 0.1.0 objects it is created now.
	 */
	dlq_topic = dlq ? eb_topic_get(dlq, true) : NULL;
	if (dlq == NULL)
		;
	else if (dlq_topic == NULL && !v2)
		eb_topic_create(dlq, topic->partitions, NULL);
	else if (dlq_topic == NULL && !PG_ARGISNULL(4) &&
			 eb_namespace_aclcheck(eb_data_schema_oid(), GetUserId(), ACL_CREATE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to create dead-letter topic \"%s\"", dlq),
				 errdetail("Topic \"%s\" does not exist; a dead-letter topic of another name than the default \"%s.dlq\" is created only for roles that may create topics.",
						   dlq, topic_name),
				 errhint("Create the topic first, or leave dead_letter_topic out to use the default.")));
	else if (dlq_topic != NULL &&
			 pg_class_aclcheck(dlq_topic->relid, GetUserId(), ACL_INSERT) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to publish to dead-letter topic \"%s\"", dlq)));
	topic = eb_topic_get(topic_name, false);

	starts = eb_start_positions(topic, kind, ts);

	eb_spi_begin(&spi, true);
	values[0] = CStringGetTextDatum(group_name);
	values[1] = Int32GetDatum(topic->topic_id);
	values[2] = ObjectIdGetDatum(spi.save_userid);	/* the caller, not the extension owner */
	values[3] = Int32GetDatum(max_attempts);
	if (dlq != NULL)
		values[4] = CStringGetTextDatum(dlq);
	else
		nulls[4] = 'n';
	eb_spi_exec("INSERT INTO eventbus.consumer_group "
				"(group_name, topic_id, owner, max_attempts, dead_letter_topic) "
				"VALUES ($1, $2, $3::regrole, $4, $5) "
				"ON CONFLICT (group_name, topic_id) DO NOTHING RETURNING group_id",
				5, argtypes, values, nulls, false);
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("consumer group \"%s\" already exists on topic \"%s\"",
						group_name, topic_name)));
	pvalues[0] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	pvalues[1] = starts;
	/* consumed (group_stats) counts from the start positions */
	eb_spi_exec(v2 ?
				"INSERT INTO eventbus.group_partition "
				"(group_id, partition, committed_position, fetched_position, consumed_base) "
				"SELECT $1, (u.n - 1)::integer, u.c, u.c, u.c "
				"FROM unnest($2) WITH ORDINALITY AS u(c, n)" :
				"INSERT INTO eventbus.group_partition "
				"(group_id, partition, committed_position, fetched_position) "
				"SELECT $1, (u.n - 1)::integer, u.c, u.c "
				"FROM unnest($2) WITH ORDINALITY AS u(c, n)",
				2, pargtypes, pvalues, NULL, false);
	eb_spi_end(&spi);
	PG_RETURN_VOID();
}

/*
 * Looks up a group the calling role owns.  Runs inside eb_spi_begin, where
 * the current user is the extension owner: the caller comes from spi.
 */
static void
eb_owned_group(const char *group_name, EbTopic *topic, EbGroup *g, EbSpi *spi)
{
	eb_group_lookup(group_name, topic, g);
	eb_check_group_owner(g, group_name, spi->save_userid);
}

/* The same, with the group's lock in exclusive mode, to delete it. */
static void
eb_owned_group_exclusive(const char *group_name, EbTopic *topic, EbGroup *g, EbSpi *spi)
{
	eb_owned_group(group_name, topic, g, spi);
	(void) eb_group_lookup_locked(group_name, topic, g, true);
	eb_check_group_owner(g, group_name, spi->save_userid);
}

/*
 * alter_group(group_name, topic, max_attempts, dead_letter_topic)
 */
Datum
eb_alter_group(PG_FUNCTION_ARGS)
{
	char	   *group_name = eb_arg_name(fcinfo, 0, "group");
	char	   *topic_name = eb_arg_name(fcinfo, 1, "topic");
	EbTopic    *topic;
	EbGroup		g;
	EbSpi		spi;
	Oid			argtypes[3] = {INT4OID, INT4OID, TEXTOID};
	Datum		values[3];
	char		nulls[3] = {' ', ' ', ' '};

	eb_check_writable("eventbus.alter_group()");
	topic = eb_topic_get(topic_name, false);
	if (!PG_ARGISNULL(2))
	{
		int32		max_attempts = PG_GETARG_INT32(2);

		if (max_attempts < 1 || max_attempts > EB_MAX_ATTEMPTS_LIMIT)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("max_attempts must be between 1 and %d", EB_MAX_ATTEMPTS_LIMIT)));
		values[1] = Int32GetDatum(max_attempts);
	}
	else
		nulls[1] = 'n';
	if (!PG_ARGISNULL(3))
	{
		char	   *dlq = eb_arg_name(fcinfo, 3, "topic");
		EbTopic    *dlq_topic = eb_topic_get(dlq, false);

		if (strcmp(dlq, topic_name) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("a topic cannot be its own dead-letter topic")));
		if (pg_class_aclcheck(dlq_topic->relid, GetUserId(), ACL_INSERT) != ACLCHECK_OK)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("permission denied to publish to dead-letter topic \"%s\"", dlq)));
		values[2] = CStringGetTextDatum(dlq);
	}
	else
		nulls[2] = 'n';

	eb_spi_begin(&spi, true);
	eb_owned_group(group_name, topic, &g, &spi);
	values[0] = Int32GetDatum(g.group_id);
	eb_spi_exec("UPDATE eventbus.consumer_group SET "
				"max_attempts = coalesce($2, max_attempts), "
				"dead_letter_topic = coalesce($3, dead_letter_topic) "
				"WHERE group_id = $1",
				3, argtypes, values, nulls, false);
	eb_spi_end(&spi);
	PG_RETURN_VOID();
}

/*
 * delete_group(group_name, topic): one topic, or all when topic is NULL.
 */
Datum
eb_delete_group(PG_FUNCTION_ARGS)
{
	char	   *group_name = eb_arg_name(fcinfo, 0, "group");
	EbSpi		spi;
	Oid			argtypes[1] = {INT4OID};
	Datum		values[1];
	List	   *topics = NIL;
	ListCell   *lc;

	eb_check_writable("eventbus.delete_group()");
	if (!PG_ARGISNULL(1))
		topics = list_make1(eb_arg_name(fcinfo, 1, "topic"));
	else
	{
		Oid			nargtypes[1] = {TEXTOID};
		Datum		nvalues[1];
		MemoryContext upper = CurrentMemoryContext;
		uint64		i;

		eb_spi_begin(&spi, true);
		nvalues[0] = CStringGetTextDatum(group_name);
		eb_spi_exec("SELECT t.topic FROM eventbus.consumer_group g "
					"JOIN eventbus.topic t USING (topic_id) WHERE g.group_name = $1 ORDER BY 1",
					1, nargtypes, nvalues, NULL, true);
		for (i = 0; i < SPI_processed; i++)
		{
			MemoryContext old = MemoryContextSwitchTo(upper);

			topics = lappend(topics, pstrdup(SPI_getvalue(SPI_tuptable->vals[i],
														  SPI_tuptable->tupdesc, 1)));
			MemoryContextSwitchTo(old);
		}
		eb_spi_end(&spi);
		if (topics == NIL)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("consumer group \"%s\" does not exist", group_name)));
	}

	foreach(lc, topics)
	{
		EbTopic    *topic = eb_topic_get((char *) lfirst(lc), false);
		EbGroup		g;

		eb_spi_begin(&spi, true);
		eb_owned_group_exclusive(group_name, topic, &g, &spi);
		values[0] = Int32GetDatum(g.group_id);
		eb_spi_exec("DELETE FROM eventbus.consumer_group WHERE group_id = $1",
					1, argtypes, values, NULL, false);
		eb_spi_end(&spi);
	}
	PG_RETURN_VOID();
}

/* Sets a partition's position; drops its retries and lease. */
static void
eb_set_position(EbGroup *g, int32 partition, int64 committed)
{
	Oid			argtypes[3] = {INT4OID, INT4OID, INT8OID};
	Datum		values[3];

	values[0] = Int32GetDatum(g->group_id);
	values[1] = Int32GetDatum(partition);
	values[2] = Int64GetDatum(committed);
	/* a seek is no consumption: consumed (group_stats) stays as it was */
	eb_spi_exec(eb_groups_catalog_v2() ?
				"UPDATE eventbus.group_partition SET committed_position = $3, "
				"consumed_base = consumed_base + ($3 - committed_position), "
				"fetched_position = $3, committed_at = now(), member = NULL, "
				"lease_until = NULL, generation = generation + 1 "
				"WHERE group_id = $1 AND partition = $2" :
				"UPDATE eventbus.group_partition SET committed_position = $3, "
				"fetched_position = $3, committed_at = now(), member = NULL, "
				"lease_until = NULL, generation = generation + 1 "
				"WHERE group_id = $1 AND partition = $2",
				3, argtypes, values, NULL, false);
	eb_spi_exec("DELETE FROM eventbus.group_retry WHERE group_id = $1 AND partition = $2",
				2, argtypes, values, NULL, false);
}

/*
 * seek(group_name, topic, start_at): every partition.
 */
Datum
eb_seek_all(PG_FUNCTION_ARGS)
{
	char	   *group_name = eb_arg_name(fcinfo, 0, "group");
	char	   *topic_name = eb_arg_name(fcinfo, 1, "topic");
	TimestampTz ts = 0;
	EbStartKind kind;
	EbTopic    *topic;
	EbGroup		g;
	EbSpi		spi;
	int32		p;

	eb_check_writable("eventbus.seek()");
	kind = eb_parse_start(fcinfo, 2, &ts);
	topic = eb_topic_get(topic_name, false);
	/* seeking by time reads the topic's events */
	eb_check_read_privilege(topic);

	eb_spi_begin(&spi, true);
	eb_owned_group(group_name, topic, &g, &spi);
	eb_group_ensure_partitions(&g, topic);
	for (p = 0; p < topic->partitions; p++)
		eb_set_position(&g, p, eb_start_committed(topic, p, kind, ts));
	eb_spi_end(&spi);
	PG_RETURN_VOID();
}

/*
 * seek(group_name, topic, partition, position): position is the next event
 * the group receives from the partition.
 */
Datum
eb_seek_position(PG_FUNCTION_ARGS)
{
	char	   *group_name = eb_arg_name(fcinfo, 0, "group");
	char	   *topic_name = eb_arg_name(fcinfo, 1, "topic");
	EbTopic    *topic;
	EbGroup		g;
	EbSpi		spi;
	int32		partition;
	int64		position;
	int64		end;

	eb_check_writable("eventbus.seek()");
	topic = eb_topic_get(topic_name, false);
	eb_check_read_privilege(topic);
	eb_arg_not_null(fcinfo, 2, "partition");
	eb_arg_not_null(fcinfo, 3, "position");
	partition = PG_GETARG_INT32(2);
	position = PG_GETARG_INT64(3);
	eb_check_partition_arg(topic, partition);
	(void) eb_read_horizon(topic, partition, &end);
	if (position < 0 || position > end)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("position %lld is outside partition %d of topic \"%s\"",
						(long long) position, partition, topic_name),
				 errdetail("Positions run from 0 to the end position, %lld.",
						   (long long) end)));

	eb_spi_begin(&spi, true);
	eb_owned_group(group_name, topic, &g, &spi);
	eb_group_ensure_partitions(&g, topic);
	eb_set_position(&g, partition, position - 1);
	eb_spi_end(&spi);
	PG_RETURN_VOID();
}

typedef struct EbFirstTime
{
	TimestampTz created_at;
	int64		position;
	bool		found;
} EbFirstTime;

static EbEmitResult
eb_first_time_emit(void *arg, EbTopic *topic, TupleTableSlot *slot)
{
	EbFirstTime *ft = (EbFirstTime *) arg;
	bool		isnull;

	ft->created_at = DatumGetTimestampTz(slot_getattr(slot, Anum_ev_created_at, &isnull));
	ft->position = DatumGetInt64(slot_getattr(slot, Anum_ev_position, &isnull));
	ft->found = true;
	return EB_EMIT_STOP;
}

/* Counts events, remembering the position of the last one. */
static EbEmitResult
eb_count_emit(void *arg, EbTopic *topic, TupleTableSlot *slot)
{
	bool		isnull;

	*(int64 *) arg = DatumGetInt64(slot_getattr(slot, Anum_ev_position, &isnull));
	return EB_EMIT_TAKEN;
}

/*
 * Events a group has yet to consume in a partition, from 'from' on.
 *
 * By default from positions alone, in constant time: the positions from
 * 'from' to the end position, which is an upper bound of the events (it
 * also counts positions of rolled-back publishes and of transactions still
 * committing); the caller makes it 0 when its index probe found no event
 * the group can read.  exact: counted one by one, only committed events the group
 * can read now (on a standby, where readability is unknown, the position
 * difference).
 */
static int64
eb_group_lag(EbTopic *topic, int32 partition, int64 from, int64 end, Snapshot snapshot,
			 bool exact)
{
	int64		count = 0;
	int64		last = from - 1;
	int			n;

	if (end <= from)
		return 0;
	if (!exact || RecoveryInProgress())
		return end - from;
	/* in chunks: eb_read_partition counts at most INT_MAX events per call */
	do
	{
		n = eb_read_partition(topic, partition, last, 1000000, snapshot,
							  eb_count_emit, &last);
		count += n;
	} while (n == 1000000);
	return count;
}

/*
 * group_status(group_name, topic): one row per partition (see the
 * consumer_lag view), lag from positions; consumer_lag_exact(group_name,
 * topic): the same with the lag counted.  For roles with the privileges of
 * the group's owner and members of pg_monitor.
 *
 * Cost per partition: the group's row and its retries (two statements per
 * group, planned for it: a plan for any group would count another group's
 * retries with a scan of all of them), and one index probe for the oldest
 * unconsumed event; a second probe, for the first retained position, only
 * when that event is not the one right after the committed position
 * (retention or rolled-back publishes left a gap) or there is none.  With exact, a scan
 * of every unconsumed event.
 */
static Datum
eb_group_status_internal(FunctionCallInfo fcinfo, bool exact)
{
	static SPIPlanPtr plan = NULL;
	static SPIPlanPtr plan_retries = NULL;
	char	   *group_name = eb_arg_name(fcinfo, 0, "group");
	char	   *topic_name = eb_arg_name(fcinfo, 1, "topic");
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	EbTopic    *topic;
	EbGroup		g;
	EbSpi		spi;
	Oid			argtypes[1] = {INT4OID};
	Datum		values[1];
	uint64		i;
	uint64		nrows;
	SPITupleTable *rows;
	HeapTuple  *prow;
	int64	   *retries;
	Snapshot	snapshot = GetActiveSnapshot();
	bool		standby = RecoveryInProgress();

	topic = eb_topic_get(topic_name, false);
	InitMaterializedSRF(fcinfo, 0);

	eb_spi_begin(&spi, true);
	eb_group_lookup(group_name, topic, &g);
	if (!has_privs_of_role(spi.save_userid, g.owner) &&
		!has_privs_of_role(spi.save_userid, ROLE_PG_MONITOR))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to see the status of consumer group \"%s\"", group_name),
				 errdetail("The group's status is shown to roles with the privileges of its owner, \"%s\", and to members of pg_monitor.",
						   GetUserNameFromId(g.owner, false))));
	/*
	 * The group's rows and its retries per partition: two statements simple
	 * enough that planning them for this group costs little (a plan made
	 * for any group would count another group's retries with a scan of all
	 * of them).  Partitions without a row have no position yet.
	 */
	values[0] = Int32GetDatum(g.group_id);
	eb_spi_run(eb_spi_plan(&plan,
						   "SELECT partition, committed_position, committed_at, "
						   "CASE WHEN lease_until > clock_timestamp() THEN member END, "
						   "CASE WHEN lease_until > clock_timestamp() THEN lease_until END "
						   "FROM eventbus.group_partition WHERE group_id = $1",
						   1, argtypes),
			   values, NULL, true);
	rows = SPI_tuptable;
	nrows = SPI_processed;
	prow = palloc0(sizeof(HeapTuple) * topic->partitions);
	for (i = 0; i < nrows; i++)
	{
		bool		isnull;
		int32		p = DatumGetInt32(SPI_getbinval(rows->vals[i], rows->tupdesc, 1, &isnull));

		if (p >= 0 && p < topic->partitions)
			prow[p] = rows->vals[i];
	}
	eb_spi_run(eb_spi_plan(&plan_retries,
						   "SELECT partition, count(*) FROM eventbus.group_retry "
						   "WHERE group_id = $1 GROUP BY partition",
						   1, argtypes),
			   values, NULL, true);
	retries = palloc0(sizeof(int64) * topic->partitions);
	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		int32		p = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));

		if (p >= 0 && p < topic->partitions)
			retries[p] = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull));
	}

	for (int32 p = 0; p < topic->partitions; p++)
	{
		HeapTuple	tup = prow[p];
		TupleDesc	desc = rows->tupdesc;
		Datum		out[10];
		bool		nulls[10];
		bool		isnull = true;
		int64		committed = -1;
		int64		end;
		int64		first = -1;
		int64		from;
		EbFirstTime ft;
		int			c;

		if (tup != NULL)
		{
			committed = DatumGetInt64(SPI_getbinval(tup, desc, 2, &isnull));
			if (isnull)
				committed = -1;
		}
		memset(nulls, 0, sizeof(nulls));
		end = eb_end_position(topic, p);

		/*
		 * The oldest event the group can read (none below the first retained
		 * position exists); a standby cannot tell which events are safe to
		 * read: no time lag there.
		 */
		ft.found = false;
		if (!standby)
		{
			/* usually the next position: a probe that reads one index entry */
			(void) eb_read_range(topic, p, committed, committed + 2, 1, snapshot,
								 eb_first_time_emit, &ft);
			if (!ft.found)
				(void) eb_read_partition(topic, p, committed, 1, snapshot,
										 eb_first_time_emit, &ft);
		}
		from = committed + 1;
		/* is anything between the committed position and that event retained? */
		if (standby || !ft.found || ft.position > from)
		{
			first = eb_first_position(topic, p);
			if (first > from)
				from = first;
		}

		out[0] = Int32GetDatum(p);
		out[1] = Int64GetDatum(committed);
		out[2] = Int64GetDatum(end);
		/* nothing readable after the committed position: nothing to consume */
		if (!exact && !standby && !ft.found)
			out[3] = Int64GetDatum(0);
		else
			out[3] = Int64GetDatum(eb_group_lag(topic, p, from, end, snapshot, exact));
		out[4] = TimestampTzGetDatum(ft.created_at);
		nulls[4] = !ft.found;
		for (c = 3; c <= 5; c++)
		{
			out[c + 2] = tup != NULL ? SPI_getbinval(tup, desc, c, &isnull) : (Datum) 0;
			nulls[c + 2] = tup == NULL || isnull;
		}
		out[8] = Int64GetDatum(retries[p]);
		/* events retention removed before the group consumed them */
		out[9] = Int64GetDatum(first > committed + 1 ? first - (committed + 1) : 0);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, out, nulls);
	}
	eb_spi_end(&spi);
	return (Datum) 0;
}

Datum
eb_group_status(PG_FUNCTION_ARGS)
{
	return eb_group_status_internal(fcinfo, false);
}

Datum
eb_group_status_exact(PG_FUNCTION_ARGS)
{
	return eb_group_status_internal(fcinfo, true);
}

/* Operations that need the 0.2.0 group tables refuse 0.1.0 objects. */
static void
eb_require_groups_v2(const char *fname)
{
	if (!eb_groups_catalog_v2())
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("%s needs the objects of extension version %s", fname, EB_SQL_VERSION),
				 errhint("Update the extension: ALTER EXTENSION %s UPDATE;", EB_EXTENSION)));
}

static void
eb_set_paused(FunctionCallInfo fcinfo, bool paused)
{
	char	   *group_name = eb_arg_name(fcinfo, 0, "group");
	char	   *topic_name = eb_arg_name(fcinfo, 1, "topic");
	EbTopic    *topic;
	EbGroup		g;
	EbSpi		spi;
	Oid			argtypes[2] = {INT4OID, BOOLOID};
	Datum		values[2];

	eb_check_writable(paused ? "eventbus.pause_group()" : "eventbus.resume_group()");
	eb_require_groups_v2(paused ? "eventbus.pause_group()" : "eventbus.resume_group()");
	topic = eb_topic_get(topic_name, false);

	eb_spi_begin(&spi, true);
	eb_owned_group(group_name, topic, &g, &spi);
	values[0] = Int32GetDatum(g.group_id);
	values[1] = BoolGetDatum(paused);
	eb_spi_exec("UPDATE eventbus.consumer_group SET paused = $2 WHERE group_id = $1",
				2, argtypes, values, NULL, false);
	eb_spi_end(&spi);
}

/*
 * pause_group(group_name, topic): poll() returns nothing and wait() does
 * not return true until resume_group().  A poll already running finishes.
 */
Datum
eb_pause_group(PG_FUNCTION_ARGS)
{
	eb_set_paused(fcinfo, true);
	PG_RETURN_VOID();
}

/* resume_group(group_name, topic) */
Datum
eb_resume_group(PG_FUNCTION_ARGS)
{
	eb_set_paused(fcinfo, false);
	PG_RETURN_VOID();
}

/*
 * redrive(group_name, topic, max_events): moves the group's dead letters,
 * oldest first, back to the group as retries due now (attempts reset), in
 * one statement that deletes them from eventbus.dead_letter: a dead letter
 * that a concurrent redrive moved first is deleted already and skipped, so
 * each is moved once.  Only this group gets them again; its dead-letter
 * topic keeps the copies, which other readers may have seen.
 */
Datum
eb_redrive(PG_FUNCTION_ARGS)
{
	char	   *group_name = eb_arg_name(fcinfo, 0, "group");
	char	   *topic_name = eb_arg_name(fcinfo, 1, "topic");
	EbTopic    *topic;
	EbGroup		g;
	EbSpi		spi;
	Oid			argtypes[2] = {INT4OID, INT4OID};
	Datum		values[2];
	char		nulls[2] = {' ', ' '};
	bool		isnull;
	int64		moved;

	eb_check_writable("eventbus.redrive()");
	eb_require_groups_v2("eventbus.redrive()");
	if (!PG_ARGISNULL(2) && PG_GETARG_INT32(2) < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_events must be positive or NULL")));
	topic = eb_topic_get(topic_name, false);
	/* the group reads the events again */
	eb_check_read_privilege(topic);

	eb_spi_begin(&spi, true);
	eb_owned_group(group_name, topic, &g, &spi);
	(void) eb_group_lookup_locked(group_name, topic, &g, false);
	eb_check_group_owner(&g, group_name, spi.save_userid);
	values[0] = Int32GetDatum(g.group_id);
	if (PG_ARGISNULL(2))
		nulls[1] = 'n';
	else
		values[1] = Int32GetDatum(PG_GETARG_INT32(2));
	eb_spi_exec("WITH moved AS ("
				"  DELETE FROM eventbus.dead_letter d "
				"  WHERE d.group_id = $1 AND (d.partition, d.position) IN ("
				"    SELECT o.partition, o.position FROM eventbus.dead_letter o "
				"    WHERE o.group_id = $1 "
				"    ORDER BY o.dead_lettered_at, o.partition, o.position LIMIT $2) "
				"  RETURNING d.partition, d.position, d.reason), "
				"ins AS ("
				"  INSERT INTO eventbus.group_retry "
				"  (group_id, partition, position, attempts, not_before, reason) "
				"  SELECT $1, m.partition, m.position, 0, clock_timestamp(), m.reason FROM moved m "
				"  ON CONFLICT (group_id, partition, position) DO UPDATE SET "
				"  attempts = 0, not_before = EXCLUDED.not_before, delivered = false, "
				"  reason = EXCLUDED.reason "
				"  RETURNING 1) "
				"SELECT count(*) FROM ins",
				2, argtypes, values, nulls, false);
	moved = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	eb_spi_end(&spi);
	PG_RETURN_INT64(moved);
}

/*
 * purge_dead_letters(group_name, topic, before): forgets the group's dead
 * letters (before a time, or all); they can no longer be redriven.
 */
Datum
eb_purge_dead_letters(PG_FUNCTION_ARGS)
{
	char	   *group_name = eb_arg_name(fcinfo, 0, "group");
	char	   *topic_name = eb_arg_name(fcinfo, 1, "topic");
	EbTopic    *topic;
	EbGroup		g;
	EbSpi		spi;
	Oid			argtypes[2] = {INT4OID, TIMESTAMPTZOID};
	Datum		values[2];
	char		nulls[2] = {' ', ' '};
	int64		purged;

	eb_check_writable("eventbus.purge_dead_letters()");
	eb_require_groups_v2("eventbus.purge_dead_letters()");
	topic = eb_topic_get(topic_name, false);

	eb_spi_begin(&spi, true);
	eb_owned_group(group_name, topic, &g, &spi);
	values[0] = Int32GetDatum(g.group_id);
	if (PG_ARGISNULL(2))
		nulls[1] = 'n';
	else
		values[1] = PG_GETARG_DATUM(2);
	eb_spi_exec("DELETE FROM eventbus.dead_letter "
				"WHERE group_id = $1 AND ($2::timestamptz IS NULL OR dead_lettered_at < $2)",
				2, argtypes, values, nulls, false);
	purged = (int64) SPI_processed;
	eb_spi_end(&spi);
	PG_RETURN_INT64(purged);
}
