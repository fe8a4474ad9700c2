/*-------------------------------------------------------------------------
 *
 * relay_slot.c
 *	  The relay's logical replication slots: how a slot is created and
 *	  checked before the relay uses it, how every pg_eventbus slot of the
 *	  cluster is reported (relay_slot_info(), behind the relay_slots and
 *	  relay_status views), how an orphan is dropped on request
 *	  (drop_relay_slot()), and what DROP EXTENSION does with the slot.
 *
 * Each database's relay owns the slot pg_eventbus_relay_<database oid>.
 *
 * Creation (eb_relay_slot_ensure, called by the relay worker before each
 * session):
 *	- from PostgreSQL 17 the slot is a failover slot, so that slot
 *	  synchronization keeps a copy on standbys and the relay continues from
 *	  it after a promotion; a slot created by an older major (pg_upgrade) is
 *	  switched to failover;
 *	- a slot invalidated by core (WAL removed under max_slot_wal_keep_size,
 *	  idle_replication_slot_timeout, ...) is never dropped or replaced here:
 *	  the relay waits and relay_status says why, until an administrator
 *	  drops it (drop_relay_slot()) after deciding what to do about the
 *	  events that were not sent;
 *	- each creation is recorded in eventbus.relay_slot.  When a slot of this
 *	  database existed before (the row is there, the slot is not: a
 *	  promotion without slot synchronization, as on 15 and 16, or a dropped
 *	  slot) and relayed topics hold events, events committed before the new
 *	  slot's start may never have reached Kafka: the row keeps a warning,
 *	  shown in relay_status, and a WARNING is logged.
 *
 * DROP EXTENSION: slots are not transactional, so the slot is dropped only
 * after the dropping transaction committed (an object access hook notes
 * the drop, a transaction callback acts at commit, forgets at abort, also
 * for subtransactions).  A slot held by a running relay is left to that
 * relay, which drops it when it sees the extension gone.  A failure there
 * is a WARNING, never an error after commit.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "access/xlogrecovery.h"
#include "access/xlogutils.h"
#include "catalog/objectaccess.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "replication/logical.h"
#include "replication/slot.h"
#include "storage/lwlock.h"
#include "utils/builtins.h"
#include "utils/pg_lsn.h"
#include "utils/snapmgr.h"
#include "utils/tuplestore.h"

#include "settings.h"
#include "catalog.h"
#include "compat.h"
#include "worker.h"
#include "privileged.h"
#include "relay.h"

PG_FUNCTION_INFO_V1(eb_relay_slot_info);
PG_FUNCTION_INFO_V1(eb_drop_relay_slot);
PG_FUNCTION_INFO_V1(eb_resolve_relay_slot_warning);

#define EB_RELAY_SLOT_PREFIX "pg_eventbus_relay_"

/* ---------- names ---------- */

/* The database a relay slot's name belongs to, or InvalidOid. */
static Oid
eb_relay_slot_database(const char *name)
{
	const char *digits;
	char	   *end;
	unsigned long oid;

	if (strncmp(name, EB_RELAY_SLOT_PREFIX, strlen(EB_RELAY_SLOT_PREFIX)) != 0)
		return InvalidOid;
	digits = name + strlen(EB_RELAY_SLOT_PREFIX);
	if (*digits < '0' || *digits > '9')
		return InvalidOid;
	errno = 0;
	oid = strtoul(digits, &end, 10);
	if (errno != 0 || *end != '\0' || oid > PG_UINT32_MAX)
		return InvalidOid;
	return (Oid) oid;
}

/*
 * Why a relay slot is no relay's (NULL: it is the slot of a relay that
 * eventbus.database and eventbus.kafka_brokers ask for: its database is
 * served, and the launcher drops the slot of a served database that no
 * longer has the extension).  dbname is NULL for a database that no longer
 * exists.
 */
static const char *
eb_relay_slot_orphan_reason(const char *dbname)
{
	if (dbname == NULL)
		return "its database no longer exists";
	if (eb_kafka_brokers == NULL || eb_kafka_brokers[0] == '\0')
		return "eventbus.kafka_brokers is empty: no relay runs";
	if (!eb_database_served(dbname))
		return psprintf("eventbus.database (\"%s\") does not list database \"%s\"",
						eb_database ? eb_database : "", dbname);
	return NULL;
}

/* ---------- creation and checks (the relay worker) ---------- */

/*
 * Relayed topics of this database whose tables hold events (rows, even of
 * aborted transactions: the check errs on the safe side), as a list "a, b",
 * or NULL.  Inside eb_spi_begin().
 */
static char *
eb_relay_topics_with_events(void)
{
	eb_spi_exec("SELECT pg_catalog.string_agg(t.topic, ', ' ORDER BY t.topic) FROM eventbus.topic t "
				"WHERE t.relay_to IS NOT NULL AND EXISTS (SELECT 1 FROM eventbus.segment s "
				"WHERE s.topic_id = t.topic_id AND pg_catalog.pg_relation_size(s.table_oid) > 0)",
				0, NULL, NULL, NULL, true);
	if (SPI_processed != 1)
		return NULL;
	return SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
}

/*
 * Before a slot is created: if a slot of this database existed before (a
 * row in eventbus.relay_slot) and relayed topics hold events, returns the
 * warning to keep (the start LSN is filled in later as %X/%X twice), else
 * NULL.  Inside eb_spi_begin(), in the creating transaction.
 */
static char *
eb_relay_slot_gap_check(const char *slot, char **topics_out)
{
	Oid			argtypes[1] = {NAMEOID};
	Datum		values[1];
	NameData	name;
	char	   *previous;
	char	   *topics;

	/* objects of 0.1.0 have no record of earlier slots */
	if (!eb_catalog_has("relay_slot"))
		return NULL;
	namestrcpy(&name, slot);
	values[0] = NameGetDatum(&name);
	eb_spi_exec("SELECT created_at::text FROM eventbus.relay_slot WHERE slot_name = $1",
				1, argtypes, values, NULL, true);
	if (SPI_processed != 1)
		return NULL;
	previous = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	topics = eb_relay_topics_with_events();
	if (topics == NULL)
		return NULL;
	*topics_out = topics;
	return previous ? previous : "at an unknown time";
}

/* Records a slot just created in eventbus.relay_slot.  Inside eb_spi_begin(). */
static void
eb_relay_slot_record(const char *slot, XLogRecPtr start, bool failover,
					 const char *warning)
{
	Oid			argtypes[4] = {NAMEOID, LSNOID, BOOLOID, TEXTOID};
	Datum		values[4];
	char		nulls[4] = {' ', ' ', ' ', 'n'};
	NameData	name;

	if (!eb_catalog_has("relay_slot"))
		return;					/* objects of 0.1.0: no record kept */
	namestrcpy(&name, slot);
	values[0] = NameGetDatum(&name);
	values[1] = LSNGetDatum(start);
	values[2] = BoolGetDatum(failover);
	if (warning)
	{
		values[3] = CStringGetTextDatum(warning);
		nulls[3] = ' ';
	}
	eb_spi_exec("DELETE FROM eventbus.relay_slot WHERE slot_name = $1",
				1, argtypes, values, NULL, false);
	eb_spi_exec("INSERT INTO eventbus.relay_slot (slot_name, created_at, created_lsn, failover, warning) "
				"VALUES ($1, pg_catalog.now(), $2, $3, $4)",
				4, argtypes, values, nulls, false);
}

/*
 * Creates the relay slot (a failover slot from 17 on) and records it, with
 * a warning when it replaces an earlier one while relayed topics hold
 * events (see the file header).  The slot stays ephemeral until the
 * record is committed: an error in between drops it, so that a slot never
 * exists without its record.
 */
static void
eb_relay_slot_create(const char *slot)
{
	LogicalDecodingContext *ctx;
	XLogRecPtr	start;
	EbSpi		spi;
	char	   *previous;
	char	   *topics = NULL;
	char	   *warning = NULL;
#ifdef EB_HAVE_FAILOVER_SLOTS
	bool		failover = true;
#else
	bool		failover = false;
#endif

	MemoryContext outer = CurrentMemoryContext;

	ereport(LOG,
			(errmsg("pg_eventbus relay: creating replication slot \"%s\"%s", slot,
					failover ? " (a failover slot)" : "")));
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	eb_spi_begin(&spi, false);
	previous = eb_relay_slot_gap_check(slot, &topics);

	eb_check_logical_decoding_requirements();
	eb_replication_slot_create(slot, true, RS_EPHEMERAL, false, failover);
	eb_ensure_logical_decoding();
	ctx = eb_create_init_decoding_context(EB_EXTENSION, NIL, false, InvalidXLogRecPtr,
										  XL_ROUTINE(.page_read = read_local_xlog_page,
													 .segment_open = wal_segment_open,
													 .segment_close = wal_segment_close),
										  NULL, NULL, NULL);
	DecodingContextFindStartpoint(ctx);
	start = MyReplicationSlot->data.confirmed_flush;
	FreeDecodingContext(ctx);

	if (previous != NULL)
		warning = MemoryContextStrdup(outer, psprintf("the relay's replication slot was created anew at %X/%X, "
						   "replacing one created %s: events of relayed topics (%s) "
						   "committed before %X/%X that the old slot had not confirmed "
						   "may be missing in Kafka",
						   LSN_FORMAT_ARGS(start), previous, topics,
						   LSN_FORMAT_ARGS(start)));
	if (topics != NULL)
		topics = MemoryContextStrdup(outer, topics);
	eb_relay_slot_record(slot, start, failover, warning);
	eb_spi_end(&spi);
	PopActiveSnapshot();
	CommitTransactionCommand();
	ReplicationSlotPersist();
	ReplicationSlotRelease();

	if (warning != NULL)
		ereport(WARNING,
				(errcode(ERRCODE_WARNING),
				 errmsg("pg_eventbus relay: replication slot \"%s\" is new, but a slot of this database existed before",
						slot),
				 errdetail("Events of relayed topics (%s) committed before %X/%X that the old slot had not confirmed may be missing in Kafka (a promotion without slot synchronization, or a lost slot).",
						   topics, LSN_FORMAT_ARGS(start)),
				 errhint("Send what Kafka may be missing again from the topics' tables as docs/ha.md describes (\"After a slot was lost\"), then call eventbus.resolve_relay_slot_warning().")));
	if (warning != NULL)
		pfree(warning);
	if (topics != NULL)
		pfree(topics);
}

/*
 * Makes the relay slot ready for a session: refuses an invalidated slot
 * (false, with the reason and the recovery in why), switches an existing
 * slot to failover where core has failover slots, creates a missing one.
 * Called by the relay worker outside a transaction, the extension
 * installed.
 */
bool
eb_relay_slot_ensure(const char *slot, char *why, size_t whylen)
{
	ReplicationSlot *s;
	const char *invalidated = NULL;
	bool		failover = false;
	bool		synced = false;

	LWLockAcquire(ReplicationSlotControlLock, LW_SHARED);
	s = SearchNamedReplicationSlot(slot, false);
	if (s != NULL)
	{
		SpinLockAcquire(&s->mutex);
		invalidated = eb_slot_invalidation_reason(&s->data);
		failover = eb_slot_failover(&s->data);
		synced = eb_slot_synced(&s->data);
		SpinLockRelease(&s->mutex);
	}
	LWLockRelease(ReplicationSlotControlLock);

	if (s == NULL)
	{
		eb_relay_slot_create(slot);
		return true;
	}
	if (invalidated != NULL)
	{
		snprintf(why, whylen,
				 "replication slot \"%s\" was invalidated (%s): events committed since it fell behind were not relayed; "
				 "the relay waits and never replaces the slot by itself. Recover as docs/ha.md describes "
				 "(\"An invalidated slot\"), then drop it with eventbus.drop_relay_slot('%s') to relay again from then on.",
				 slot, invalidated, slot);
		return false;
	}
#ifdef EB_HAVE_FAILOVER_SLOTS
	if (!failover && !synced && !RecoveryInProgress())
	{
		eb_replication_slot_set_failover(slot);
		ereport(LOG,
				(errmsg("pg_eventbus relay: replication slot \"%s\" is now a failover slot", slot),
				 errdetail("It was created without failover (by an older PostgreSQL major); standbys with slot synchronization now keep a copy.")));
	}
#else
	(void) failover;
	(void) synced;
#endif
	return true;
}

/*
 * Have the standbys of synchronized_standby_slots confirmed WAL up to lsn?
 * From 17 a failover slot must not get ahead of them: what the relay sends
 * to Kafka must survive a promotion of such a standby (otherwise Kafka
 * would hold events the new primary never had, and the new primary would
 * hand their positions to other events).  The relay decodes a record only
 * once this is true for its end.  Always true before 17.
 */
bool
eb_relay_slot_standbys_confirmed(XLogRecPtr lsn)
{
	static XLogRecPtr confirmed_upto = InvalidXLogRecPtr;

	if (lsn <= confirmed_upto)
		return true;
	if (!eb_standby_slots_caught_up(lsn))
		return false;
	confirmed_upto = lsn;
	return true;
}

/*
 * Is the extension installed in this database?  Outside a transaction (the
 * relay worker's session checks it now and then: after DROP EXTENSION it
 * ends the session and drops the slot).
 */
bool
eb_relay_extension_installed(void)
{
	bool		installed;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	installed = OidIsValid(get_extension_oid(EB_EXTENSION, true));
	CommitTransactionCommand();
	return installed;
}

/* ---------- reporting ---------- */

/*
 * relay_slot_info(): every pg_eventbus relay slot of the cluster (all
 * databases), with its database, the process using it, positions, WAL it
 * retains, failover, invalidation, and whether it is an orphan.
 */
Datum
eb_relay_slot_info(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	XLogRecPtr	now_lsn;
	int			i;

	InitMaterializedSRF(fcinfo, 0);
	now_lsn = RecoveryInProgress() ? GetXLogReplayRecPtr(NULL) : GetXLogInsertRecPtr();

	for (i = 0; i < max_replication_slots; i++)
	{
		ReplicationSlot *s = &ReplicationSlotCtl->replication_slots[i];
		ReplicationSlotPersistentData data;
		pid_t		pid;
		bool		in_use;
		Oid			dboid;
		char	   *dbname;
		const char *invalidated;
		const char *orphan;
		char	   *status;
		Datum		values[12];
		bool		nulls[12];

		/* copy under the slot's lock, then work unlocked */
		LWLockAcquire(ReplicationSlotControlLock, LW_SHARED);
		SpinLockAcquire(&s->mutex);
		in_use = s->in_use;
		data = s->data;
		pid = eb_slot_active_pid(s);
		SpinLockRelease(&s->mutex);
		LWLockRelease(ReplicationSlotControlLock);

		if (!in_use)
			continue;
		dboid = eb_relay_slot_database(NameStr(data.name));
		if (!OidIsValid(dboid) || data.database != dboid)
			continue;

		dbname = get_database_name(dboid);
		invalidated = eb_slot_invalidation_reason(&data);
		orphan = eb_relay_slot_orphan_reason(dbname);
		if (invalidated != NULL)
			status = psprintf("invalidated (%s): the relay waits; recover, then drop it with eventbus.drop_relay_slot()",
							  invalidated);
		else if (orphan != NULL)
			status = psprintf("orphaned: %s; it retains WAL until the relay uses it again or eventbus.drop_relay_slot() drops it",
							  orphan);
		else if (pid != 0)
			status = psprintf("in use by the relay of database \"%s\"", dbname);
		else
			status = psprintf("the slot of the relay of database \"%s\", not in use right now", dbname);

		memset(nulls, 0, sizeof(nulls));
		values[0] = CStringGetTextDatum(NameStr(data.name));
		values[1] = ObjectIdGetDatum(dboid);
		values[2] = dbname ? DirectFunctionCall1(namein, CStringGetDatum(dbname)) : (Datum) 0;
		nulls[2] = dbname == NULL;
		values[3] = Int32GetDatum(pid);
		nulls[3] = pid == 0;
		values[4] = LSNGetDatum(data.restart_lsn);
		nulls[4] = XLogRecPtrIsInvalid(data.restart_lsn);
		values[5] = LSNGetDatum(data.confirmed_flush);
		nulls[5] = XLogRecPtrIsInvalid(data.confirmed_flush);
		values[6] = Int64GetDatum(now_lsn > data.restart_lsn ? (int64) (now_lsn - data.restart_lsn) : 0);
		nulls[6] = XLogRecPtrIsInvalid(data.restart_lsn);
		values[7] = BoolGetDatum(eb_slot_failover(&data));
		values[8] = BoolGetDatum(eb_slot_synced(&data));
		values[9] = invalidated ? CStringGetTextDatum(invalidated) : (Datum) 0;
		nulls[9] = invalidated == NULL;
		values[10] = BoolGetDatum(orphan != NULL);
		values[11] = CStringGetTextDatum(status);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/* ---------- dropping on request ---------- */

/*
 * drop_relay_slot(slot_name name): superusers only.  Drops a pg_eventbus
 * relay slot that is an orphan or invalidated; refuses a slot in use and
 * the slot of the relay the settings ask for.
 */
Datum
eb_drop_relay_slot(PG_FUNCTION_ARGS)
{
	char	   *slot = NameStr(*PG_GETARG_NAME(0));
	Oid			dboid;
	ReplicationSlot *s;
	pid_t		pid = 0;
	const char *invalidated = NULL;
	char	   *dbname;
	const char *orphan;

	if (!superuser())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for function eventbus.drop_relay_slot"),
				 errdetail("Only superusers drop replication slots of the relay.")));
	dboid = eb_relay_slot_database(slot);
	if (!OidIsValid(dboid))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"%s\" is not the name of a pg_eventbus relay slot", slot),
				 errdetail("Relay slots are named %s<database oid>; see eventbus.relay_slots.",
						   EB_RELAY_SLOT_PREFIX)));

	LWLockAcquire(ReplicationSlotControlLock, LW_SHARED);
	s = SearchNamedReplicationSlot(slot, false);
	if (s != NULL)
	{
		SpinLockAcquire(&s->mutex);
		pid = eb_slot_active_pid(s);
		invalidated = eb_slot_invalidation_reason(&s->data);
		SpinLockRelease(&s->mutex);
	}
	LWLockRelease(ReplicationSlotControlLock);

	if (s == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("replication slot \"%s\" does not exist", slot)));
	if (pid != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_IN_USE),
				 errmsg("replication slot \"%s\" is in use by process %d", slot, (int) pid),
				 errdetail("A slot in use is the slot of a running relay."),
				 errhint("Stop that relay first: clear eventbus.kafka_brokers, or leave its database out of eventbus.database, and reload the configuration.")));
	dbname = get_database_name(dboid);
	orphan = eb_relay_slot_orphan_reason(dbname);
	if (orphan == NULL && invalidated == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("replication slot \"%s\" is the slot of the relay of database \"%s\"", slot, dbname),
				 errdetail("Dropping it would lose the relay's position: events committed since its confirmed LSN would never reach Kafka."),
				 errhint("Drop it only once the relay no longer uses it: clear eventbus.kafka_brokers, or leave its database out of eventbus.database, and reload the configuration.")));

	ReplicationSlotDrop(slot, true);
	ereport(LOG,
			(errmsg("pg_eventbus: dropped replication slot \"%s\" of database %s on request (%s)",
					slot, dbname ? quote_identifier(dbname) : "(dropped)",
					invalidated ? psprintf("invalidated: %s", invalidated) : orphan)));
	PG_RETURN_VOID();
}

/*
 * resolve_relay_slot_warning(): superusers only.  Clears the warning of
 * this database's relay slot (see eb_relay_slot_record) once what Kafka
 * was missing was sent again or judged not needed; true if there was one.
 */
Datum
eb_resolve_relay_slot_warning(PG_FUNCTION_ARGS)
{
	EbSpi		spi;
	Oid			argtypes[1] = {NAMEOID};
	Datum		values[1];
	NameData	name;
	char		slot[NAMEDATALEN];
	uint64		n;

	if (!superuser())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for function eventbus.resolve_relay_slot_warning"),
				 errdetail("Only superusers manage the relay's replication slot.")));
	eb_relay_slot_name(MyDatabaseId, slot);
	namestrcpy(&name, slot);
	values[0] = NameGetDatum(&name);
	eb_spi_begin(&spi, false);
	eb_spi_exec("UPDATE eventbus.relay_slot SET warning = NULL WHERE slot_name = $1 AND warning IS NOT NULL",
				1, argtypes, values, NULL, false);
	n = SPI_processed;
	eb_spi_end(&spi);
	PG_RETURN_BOOL(n > 0);
}

/* ---------- DROP EXTENSION ---------- */

static object_access_hook_type prev_object_access = NULL;

/*
 * The transaction nesting level at which this transaction dropped the
 * extension (0: it did not).
 */
static int	dropped_at_level = 0;

static void
eb_relay_slot_object_access(ObjectAccessType access, Oid classId, Oid objectId,
							int subId, void *arg)
{
	if (prev_object_access)
		prev_object_access(access, classId, objectId, subId, arg);
	if (access == OAT_DROP && classId == ExtensionRelationId && dropped_at_level == 0)
	{
		char	   *name = get_extension_name(objectId);

		if (name != NULL && strcmp(name, EB_EXTENSION) == 0)
			dropped_at_level = GetCurrentTransactionNestLevel();
	}
}

/*
 * Drops this database's relay slot unless a process holds it (false then;
 * true when it is gone or was never there).  why ends the log line
 * ("after DROP EXTENSION").  Callable after a commit: a failure to drop is
 * a WARNING, never raised.  The one place that drops a slot its extension
 * no longer needs: the DROP EXTENSION hook, the database worker and the
 * relay worker all come here.
 */
bool
eb_relay_slot_drop_unused(const char *why)
{
	char		slot[NAMEDATALEN];
	ReplicationSlot *s;
	pid_t		pid = 0;
	MemoryContext cxt = CurrentMemoryContext;

	eb_relay_slot_name(MyDatabaseId, slot);
	LWLockAcquire(ReplicationSlotControlLock, LW_SHARED);
	s = SearchNamedReplicationSlot(slot, false);
	if (s != NULL)
	{
		SpinLockAcquire(&s->mutex);
		pid = eb_slot_active_pid(s);
		SpinLockRelease(&s->mutex);
	}
	LWLockRelease(ReplicationSlotControlLock);
	if (s == NULL)
		return true;
	if (pid != 0 || MyReplicationSlot != NULL)
		return false;

	HOLD_INTERRUPTS();
	PG_TRY();
	{
		ReplicationSlotDrop(slot, true);
		ereport(LOG,
				(errmsg("pg_eventbus: dropped replication slot \"%s\" %s", slot, why)));
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		LWLockReleaseAll();
		if (MyReplicationSlot != NULL)
			ReplicationSlotRelease();
		ereport(WARNING,
				(errcode(ERRCODE_WARNING),
				 errmsg("could not drop replication slot \"%s\" %s: %s",
						slot, why, edata->message),
				 errhint("Drop it with pg_drop_replication_slot('%s'): it retains WAL.", slot)));
		FreeErrorData(edata);
	}
	PG_END_TRY();
	RESUME_INTERRUPTS();
	return true;
}

/*
 * After DROP EXTENSION committed: drops this database's relay slot, or, when
 * a process holds it (the relay, which drops it itself once it sees the
 * extension gone), wakes the relay.
 */
static void
eb_relay_slot_drop_after_extension(void)
{
	if (!eb_relay_slot_drop_unused("after DROP EXTENSION"))
	{
		eb_relay_wake();
		ereport(LOG,
				(errmsg("pg_eventbus: this database's relay slot is in use; the relay drops it when it sees the extension gone")));
	}
}

static void
eb_relay_slot_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
			if (dropped_at_level != 0)
			{
				dropped_at_level = 0;
				eb_relay_slot_drop_after_extension();
			}
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			/* prepared: the relay drops it when it sees the extension gone */
			dropped_at_level = 0;
			break;
		default:
			break;
	}
}

static void
eb_relay_slot_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
							   SubTransactionId parentSubid, void *arg)
{
	int			level = GetCurrentTransactionNestLevel();

	if (dropped_at_level == 0 || dropped_at_level < level)
		return;
	if (event == SUBXACT_EVENT_ABORT_SUB)
		dropped_at_level = 0;
	else if (event == SUBXACT_EVENT_COMMIT_SUB)
		dropped_at_level = level - 1;
}

void
eb_relay_slot_init(void)
{
	prev_object_access = object_access_hook;
	object_access_hook = eb_relay_slot_object_access;
	RegisterXactCallback(eb_relay_slot_xact_callback, NULL);
	RegisterSubXactCallback(eb_relay_slot_subxact_callback, NULL);
}
