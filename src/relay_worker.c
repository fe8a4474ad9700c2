/*-------------------------------------------------------------------------
 *
 * relay_worker.c
 *	  The Kafka relay worker: the process, its sessions and the decoding
 *	  loop.
 *
 * Started by the launcher (launcher.c) in each database it serves where
 * the extension is installed, when eventbus.kafka_brokers is set; its
 * status is that database's entry in shared memory.  It owns the logical
 * replication slot pg_eventbus_relay_<db oid> (created on first start,
 * output plugin: this library; how it is created, checked and reported is
 * in relay_slot.c) and decodes WAL in its own process: no replication
 * connection, no pg_hba.conf entry.
 *
 * A session acquires the slot, creates a Kafka producer (relay_kafka.c) and
 * a decoding context, then loops: read WAL up to the flush pointer, let the
 * output plugin (relay_output.c) hand every committed event of a relayed
 * topic and every outbox message to the producer through the session's
 * EbRelayWriter (relay.h), serve delivery reports, confirm the slot as far
 * as Kafka acknowledged (relay_ack.c), and wait on the latch (set at commit
 * by publishing transactions) when caught up.
 *
 * Delivery guarantee: the slot's confirmed position moves only past
 * transactions whose every message Kafka acknowledged (relay_ack.c).
 * After a crash, an outage or any failed delivery, decoding restarts from
 * the confirmed position: nothing committed is lost, and messages sent
 * again carry the same event id and LSN headers.  Reading WAL pauses while
 * eventbus.relay_max_in_flight messages are unacknowledged.
 *
 * Settings that make the producer unusable, a missing extension or
 * wal_level below logical are reported in the status (relay_status) and
 * logged once; the worker then waits for a configuration reload instead of
 * exiting.  Unexpected errors end the process; the launcher starts it again
 * a few seconds later.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "access/xact.h"
#include "access/xlog.h"
#include "access/xlogutils.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "replication/decode.h"
#include "replication/logical.h"
#include "replication/slot.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"

#include "settings.h"
#include "compat.h"
#include "privileged.h"
#include "relay_int.h"
#include "shmem.h"

static TimestampTz extension_checked_at = 0;

/* while reading WAL, delivery reports are served at least this often (messages) */
#define EB_POLL_MESSAGES 1024
/* how long a session's start waits for the first answer about Kafka topics */
#define EB_METADATA_WARM_UP_MS 1000
/* how long an ending session lets the messages in flight arrive */
#define EB_DRAIN_MS 5000

/* ---------- the session ---------- */

/*
 * Sleeps until a commit sets the latch, librdkafka queues an event
 * (kafka_event_fd) or the timeout passes.  The wait set is built once.  While
 * reading WAL is paused because too much is in flight, commits cannot be
 * relayed anyway: the latch is left out, and only acknowledgements (or the
 * timeout, which bounds how late a shutdown request is seen) wake the loop.
 */
static int
eb_relay_wait(bool paused, long timeout_ms)
{
	static WaitEventSet *set = NULL;
	static int	latch_pos = -1;
	WaitEvent	events[3];
	int			n;
	int			i;
	int			rc = 0;

	if (set == NULL)
	{
		set = eb_create_wait_event_set(3);
		latch_pos = AddWaitEventToSet(set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
		AddWaitEventToSet(set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
		AddWaitEventToSet(set, WL_SOCKET_READABLE, eb_kafka_event_fd(), NULL, NULL);
	}
	ModifyWaitEvent(set, latch_pos, WL_LATCH_SET, paused ? NULL : MyLatch);
	n = WaitEventSetWait(set, timeout_ms, events, lengthof(events), PG_WAIT_EXTENSION);
	for (i = 0; i < n; i++)
		rc |= events[i].events;
	return rc;
}

static void
eb_prepare_write(LogicalDecodingContext *ctx, XLogRecPtr lsn, TransactionId xid, bool last_write)
{
}

static void
eb_write(LogicalDecodingContext *ctx, XLogRecPtr lsn, TransactionId xid, bool last_write)
{
}

/*
 * Waits until the standbys of synchronized_standby_slots confirmed WAL up
 * to lsn (relay_slot.c), serving delivery reports meanwhile; false if
 * shutdown was requested first.
 */
static bool
eb_relay_wait_standbys(XLogRecPtr lsn)
{
	bool		waited = false;

	while (!eb_relay_slot_standbys_confirmed(lsn))
	{
		if (eb_shutdown_requested)
			return false;
		if (!waited)
		{
			eb_relay_set_state("waiting for synchronized_standby_slots");
			waited = true;
		}
		eb_relay_poll(0);
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 10L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	if (waited)
		eb_relay_set_state("running");
	return true;
}

/* Waits for a reload or shutdown, at most timeout_ms. */
static void
eb_relay_pause(long timeout_ms)
{
	(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					 timeout_ms, PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
}

/* Ends the session's producer, the topic handles held for it first. */
static void
eb_relay_producer_end(void)
{
	eb_kafka_topics_release();
	eb_producer_destroy();
}

/*
 * At a session's start, before decoding: asks the brokers about the Kafka
 * topics (eb_kafka_topics_prepare), then, while one the last session's
 * decoding stopped at is not described, asks again every second, with the
 * state "waiting for Kafka topic metadata".  False if shutdown or a reload
 * came first.
 */
static bool
eb_relay_wait_for_topics(void)
{
	bool		waited = false;

	eb_kafka_topics_prepare(EB_METADATA_WARM_UP_MS);
	while (!eb_kafka_topics_ready(waited))
	{
		if (!waited)
		{
			eb_relay_set_state("waiting for Kafka topic metadata");
			waited = true;
		}
		eb_relay_poll(0);
		eb_relay_publish_stats(false);
		eb_relay_pause(EB_BROKER_PROBE_MS);
		CHECK_FOR_INTERRUPTS();
		if (eb_shutdown_requested || ConfigReloadPending)
			return false;
	}
	return true;
}

/*
 * Exactly-once: commits the open Kafka transaction, its progress record
 * naming the backfill batch it carries, if any (eb_backfill_progress_note).
 *
 * The record never says less than Kafka already had (eb_progress_lsn):
 * a session's first Kafka transaction may carry only a backfill batch
 * before it decoded anything, or while it still skips transactions Kafka
 * had, and the record read back at the next start is the one with the
 * highest commit LSN (the last of equal ones): a lower one would lose, and
 * with it the batch it names.
 */
static bool
eb_relay_kafka_commit(long wait_ms)
{
	StringInfoData note;
	bool		ok;
	XLogRecPtr	commit_lsn = Max(eb_last_commit_lsn, eb_progress_lsn);
	XLogRecPtr	end_lsn = Max(eb_last_end_lsn, commit_lsn);

	initStringInfo(&note);
	eb_backfill_progress_note(&note);
	ok = eb_ack_kafka_commit(commit_lsn, end_lsn, note.data, wait_ms);
	pfree(note.data);
	return ok;
}

/*
 * Lets the messages in flight arrive, for up to EB_DRAIN_MS: at a
 * session's normal end (shutdown, new settings) until a delivery fails; or
 * after_stop, at-least-once, when the session ended at a transaction it
 * may not send yet (its Kafka topic is not described) or at a message
 * refused under 'stop', until shutdown.  The transactions before that one
 * are in Kafka or on their way: confirming them keeps the next session,
 * which starts from the confirmed position, from sending them again; the
 * transaction it stopped at stays unconfirmed (eb_relay_confirm stops at a
 * failed or refused one).
 */
static void
eb_relay_let_arrive(bool after_stop)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), EB_DRAIN_MS);

	while (eb_in_flight > 0 && GetCurrentTimestamp() < deadline &&
		   (after_stop ? !eb_shutdown_requested : !eb_session_failed))
		eb_relay_poll(100);
}

/*
 * Relays until a delivery fails, the Kafka settings change, or shutdown.
 */
static void
eb_relay_session(const char *slot)
{
	LogicalDecodingContext *ctx;
	EbRelayWriter writer = {
		.magic = EB_RELAY_WRITER_MAGIC,
		.begin = eb_relay_txn_begin,
		.commit = eb_relay_txn_commit,
		.send = eb_relay_send,
		.skips = eb_backfill_wal_skips,
	};
	char	   *brokers = pstrdup(eb_kafka_brokers ? eb_kafka_brokers : "");
	char	   *properties = pstrdup(eb_kafka_properties ? eb_kafka_properties : "");
	char	   *file = pstrdup(eb_kafka_properties_file ? eb_kafka_properties_file : "");

	MemoryContextReset(eb_session_cxt);
	eb_session_failed = false;
	eb_stopped_for_metadata = false;
	eb_kafka_session_reset();
	eb_kafka_topics_session_reset();
	eb_backfill_session_start();

	/* exactly-once: fence older producers, read how far Kafka got */
	if (eb_exactly_once)
	{
		char		why[EB_RELAY_ERROR_LEN];

		eb_relay_set_state("starting Kafka transactions");
		if (!eb_kafka_transactions_start(why, sizeof(why)))
		{
			if (why[0] != '\0')
				eb_relay_error(why);
			/* a reload is no failure: the next session has the new settings */
			eb_session_failed = why[0] != '\0' || !ConfigReloadPending;
			eb_relay_producer_end();
			return;
		}
		/* a backfill batch Kafka has, whose progress was not saved */
		eb_backfill_recover(eb_progress_record);
	}

	/*
	 * What the brokers say of the relayed Kafka topics, asked here and
	 * between WAL records, never inside decoding; waits for the topics the
	 * last session's decoding stopped at.  Shutdown or a reload first is no
	 * failure.
	 */
	if (!eb_relay_wait_for_topics())
	{
		eb_relay_producer_end();
		return;
	}
	eb_replication_slot_acquire(slot, true);
	eb_ack_session_start(MyReplicationSlot->data.confirmed_flush);
	eb_session_active = true;
	eb_relay_output_reset();
	InvalidateSystemCaches();
	ctx = CreateDecodingContext(InvalidXLogRecPtr, NIL, false,
								XL_ROUTINE(.page_read = read_local_xlog_page,
										   .segment_open = wal_segment_open,
										   .segment_close = wal_segment_close),
								eb_prepare_write, eb_write, NULL);
	ctx->output_writer_private = &writer;
	XLogBeginRead(ctx->reader, MyReplicationSlot->data.restart_lsn);
	eb_relay_set_state("running");
	pgstat_report_activity(STATE_RUNNING, "relaying");

	for (;;)
	{
		XLogRecPtr	flush;
		bool		caught_up;
		int			n = 0;
		int64		polled_in_flight;
		int			rc;

		CHECK_FOR_INTERRUPTS();
		if (eb_shutdown_requested || eb_session_failed)
			break;
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			if (eb_relay_config_changed(brokers, properties, file))
				break;
		}
		/* after DROP EXTENSION: leave, eb_relay_ready() drops the slot */
		if (TimestampDifferenceExceeds(extension_checked_at, GetCurrentTimestamp(),
									   EB_EXTENSION_CHECK_MS))
		{
			extension_checked_at = GetCurrentTimestamp();
			if (!eb_relay_extension_installed())
				break;
		}

		flush = GetFlushRecPtr(NULL);
		polled_in_flight = eb_in_flight;
		while (ctx->reader->EndRecPtr < flush && eb_in_flight < eb_relay_max_in_flight &&
			   !eb_session_failed && !eb_shutdown_requested && !eb_kafka_txn_due())
		{
			char	   *errm = NULL;
			XLogRecord *record = XLogReadRecord(ctx->reader, &errm);

			if (errm)
				elog(ERROR, "could not read WAL for the relay: %s", errm);
			if (record != NULL && !eb_relay_wait_standbys(ctx->reader->EndRecPtr))
			{
				/* shutdown: not decoded, so not confirmable either */
				eb_session_failed = true;
				break;
			}
			if (record != NULL)
			{
				eb_decoding = true;
				LogicalDecodingProcessRecord(ctx, ctx->reader);
				eb_decoding = false;
			}
			/* after relay_topic(): describe its Kafka topic before its events come */
			eb_kafka_topics_refresh(true);

			/*
			 * Serve delivery reports every EB_POLL_MESSAGES messages sent
			 * (one record, a commit, can send a whole transaction's; one
			 * multi-insert record holds many events), and every 256
			 * records: acknowledged messages free the producer's memory
			 * and room in relay_max_in_flight while reading goes on.
			 */
			if ((++n & 255) == 0 || eb_in_flight - polled_in_flight >= EB_POLL_MESSAGES)
			{
				eb_relay_poll(0);
				polled_in_flight = eb_in_flight;
				CHECK_FOR_INTERRUPTS();
			}
		}
		eb_relay_poll(0);
		eb_relay_probe_brokers(eb_in_flight > 0);
		eb_kafka_topics_refresh(false);
		caught_up = ctx->reader->EndRecPtr >= flush;
		if (caught_up)
			eb_kafka_txn_caught_up();
		eb_relay_apply_policies();
		if (!eb_session_failed && eb_current_txn == NULL)
		{
			/* a backfill's next batch, within the in-flight limit */
			EbBackfillSink sink = {.read_lsn = ctx->reader->EndRecPtr};

			(void) eb_backfill_fill(&sink, eb_relay_max_in_flight - (int) eb_in_flight);
		}
		eb_mappings_persist();

		/*
		 * Exactly-once: commit the Kafka transaction (decoding stops only
		 * between PostgreSQL transactions) once all its messages are
		 * acknowledged, when all WAL is read or it has been open for
		 * relay_commit_interval.  While it waits for acknowledgements,
		 * reading WAL pauses (eb_kafka_txn_due).
		 */
		if (eb_kafka_txn_open() && !eb_session_failed && eb_current_txn == NULL &&
			eb_in_flight == 0 && (caught_up || eb_kafka_txn_due()))
			(void) eb_relay_kafka_commit(0);
		eb_relay_confirm(ctx, caught_up, false);
		eb_relay_publish_stats(false);

		if (!caught_up && eb_in_flight < eb_relay_max_in_flight && !eb_kafka_txn_due())
			continue;

		/*
		 * Sleep until a commit sets the latch or librdkafka queues a
		 * delivery report (kafka_event_fd), whichever comes first.
		 */
		rc = eb_relay_wait(eb_in_flight >= eb_relay_max_in_flight || eb_kafka_txn_due(),
						   eb_in_flight > 0 ? 100L : 1000L);
		ResetLatch(MyLatch);
		if (rc & WL_SOCKET_READABLE)
			eb_drain_event_fd();
	}

	/* Let what is in flight arrive (briefly), confirm it, and leave. */
	if (!eb_session_failed)
	{
		eb_relay_let_arrive(false);
		eb_relay_apply_policies();
		eb_mappings_persist();
		if (!eb_session_failed && eb_kafka_txn_open() && eb_current_txn == NULL)
			(void) eb_relay_kafka_commit(5000);
		if (!eb_session_failed)
			eb_relay_confirm(ctx, true, true);
		else if (eb_relay_slot_dirty())
			eb_relay_confirm(ctx, false, true);
	}
	else if (!eb_exactly_once && !eb_shutdown_requested &&
			 (eb_stopped_for_metadata || eb_stopped_at_refusal))
	{
		/* not under exactly-once: its open Kafka transaction is aborted */
		eb_relay_let_arrive(true);
		eb_relay_confirm(ctx, false, true);
	}
	else if (eb_relay_slot_dirty())
		eb_relay_confirm(ctx, false, true);

	eb_ack_kafka_abort();
	eb_relay_producer_end();
	eb_session_active = false;
	FreeDecodingContext(ctx);
	InvalidateSystemCaches();
	ReplicationSlotRelease();
	eb_relay_publish_stats(true);
	MemoryContextReset(eb_session_cxt);
	eb_ack_session_end();
}

/* ---------- readiness, slot, process ---------- */

/*
 * Checks that relaying is possible and creates the slot if needed.  Returns
 * false with a reason otherwise; drops the slot if the extension is gone.
 */
static bool
eb_relay_ready(const char *slot, char *why, size_t whylen)
{
	bool		installed;

	if (wal_level < EB_LOGICAL_WAL_LEVEL)
	{
		snprintf(why, whylen, "wal_level must be %s for the relay (it is %s)",
				 EB_LOGICAL_WAL_LEVEL_NAME, GetConfigOption("wal_level", false, false));
		return false;
	}
	if (max_replication_slots <= 0)
	{
		snprintf(why, whylen, "max_replication_slots must be at least 1 for the relay");
		return false;
	}

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	installed = OidIsValid(get_extension_oid(EB_EXTENSION, true));
	CommitTransactionCommand();

	if (!installed)
	{
		(void) eb_relay_slot_drop_unused("because the extension is no longer installed");
		/* not an error: the relay starts once the extension exists */
		why[0] = '\0';
		return false;
	}

	if (SearchNamedReplicationSlot(slot, true) == NULL)
		eb_relay_set_state("creating slot");
	return eb_relay_slot_ensure(slot, why, whylen);
}

/*
 * Servers with output_plugin_libraries (PostgreSQL 15.19 and later) decode
 * only with listed plugins.  This process is a superuser session using a
 * slot only it uses, with a library the administrator already trusted in
 * shared_preload_libraries: allow it for this session, nowhere else.
 */
static void
eb_relay_allow_plugin(void)
{
	const char *allowed = GetConfigOption("output_plugin_libraries", true, false);
	char	   *copy;
	List	   *names;
	ListCell   *lc;

	if (allowed == NULL)
		return;
	copy = pstrdup(allowed);
	if (SplitIdentifierString(copy, ',', &names))
	{
		foreach(lc, names)
		{
			if (strcmp((char *) lfirst(lc), EB_EXTENSION) == 0)
				return;
		}
	}
	SetConfigOption("output_plugin_libraries",
					allowed[0] ? psprintf("%s, %s", allowed, EB_EXTENSION) : EB_EXTENSION,
					PGC_SUSET, PGC_S_SESSION);
}

static void
eb_relay_sigterm(SIGNAL_ARGS)
{
	int			save_errno = errno;

	eb_shutdown_requested = true;
	SetLatch(MyLatch);
	errno = save_errno;
}

static void
eb_relay_exit(int code, Datum arg)
{
	eb_relay_producer_end();
	if (eb_my_relay == NULL)
		return;
	SpinLockAcquire(&eb_my_relay->mutex);
	eb_my_relay->pid = 0;
	eb_my_relay->latch = NULL;
	eb_my_relay->in_flight = 0;
	strlcpy(eb_my_relay->state, code == 0 ? "stopped" : "restarting after an error",
			EB_RELAY_STATE_LEN);
	SpinLockRelease(&eb_my_relay->mutex);
}

void
eb_relay_main(Datum arg)
{
	Oid			dboid = DatumGetObjectId(arg);
	char		slot[NAMEDATALEN];
	sigjmp_buf	local_sigjmp_buf;
	volatile long backoff_ms = 1000;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, eb_relay_sigterm);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);

	eb_relay_slot_name(dboid, slot);
	eb_my_relay = eb_relay_state(dboid);
	if (eb_my_relay == NULL)
		elog(ERROR, "pg_eventbus relay started in database %u without its shared entry", dboid);
	before_shmem_exit(eb_relay_exit, (Datum) 0);
	SpinLockAcquire(&eb_my_relay->mutex);
	eb_my_relay->pid = MyProcPid;
	eb_my_relay->latch = MyLatch;
	eb_my_relay->started_at = GetCurrentTimestamp();
	/* the counters go on from the previous worker's (since server start) */
	eb_stat_events = eb_my_relay->events_relayed;
	eb_stat_bytes = eb_my_relay->bytes_relayed;
	strlcpy(eb_my_relay->slot_name, slot, NAMEDATALEN);
	strlcpy(eb_my_relay->state, "starting", EB_RELAY_STATE_LEN);
	SpinLockRelease(&eb_my_relay->mutex);

	eb_relay_allow_plugin();
	CurrentResourceOwner = ResourceOwnerCreate(NULL, "pg_eventbus relay");
	eb_session_cxt = AllocSetContextCreate(TopMemoryContext, "pg_eventbus relay session",
										ALLOCSET_DEFAULT_SIZES);

	if (sigsetjmp(local_sigjmp_buf, 1) != 0)
	{
		ErrorData  *edata;

		/* Report, keep the message in the status, and let the launcher restart us. */
		error_context_stack = NULL;
		HOLD_INTERRUPTS();
		MemoryContextSwitchTo(TopMemoryContext);
		edata = CopyErrorData();
		eb_relay_error(edata->message);
		EmitErrorReport();
		proc_exit(1);
	}
	PG_exception_stack = &local_sigjmp_buf;

	while (!eb_shutdown_requested)
	{
		char		why[EB_RELAY_ERROR_LEN];

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		if (eb_kafka_brokers == NULL || eb_kafka_brokers[0] == '\0')
		{
			/* the launcher stops us too; the slot stays, with its position */
			if (SearchNamedReplicationSlot(slot, true) != NULL)
				ereport(LOG,
						(errmsg("pg_eventbus relay: stopping because eventbus.kafka_brokers is empty; replication slot \"%s\" keeps retaining WAL",
								slot),
						 errhint("Set eventbus.kafka_brokers again to relay from where it stopped, or drop the slot with eventbus.drop_relay_slot('%s') (see eventbus.relay_slots).",
								 slot)));
			break;
		}

		if (!eb_relay_ready(slot, why, sizeof(why)))
		{
			if (why[0] == '\0')
				eb_relay_set_state("waiting for CREATE EXTENSION");
			else
			{
				eb_relay_set_state("waiting");
				eb_relay_error(why);
			}
			eb_relay_pause(2000L);
			continue;
		}
		eb_producer = eb_producer_create(eb_delivery_cb, why, sizeof(why));
		if (eb_producer == NULL)
		{
			eb_relay_set_state("configuration error");
			eb_relay_error(why);
			/* nothing changes until the settings do */
			while (!eb_shutdown_requested && !ConfigReloadPending)
				eb_relay_pause(60000L);
			continue;
		}

		eb_relay_session(slot);

		if (eb_session_failed && !eb_shutdown_requested && eb_stopped_for_metadata &&
			!eb_stopped_at_refusal)
		{
			/* the next session's start waits for the brokers to describe them */
			eb_relay_set_state("waiting for Kafka topic metadata");
		}
		else if (eb_session_failed && !eb_shutdown_requested)
		{
			/* back off before relaying again, up to 30 s */
			eb_relay_set_state(eb_stopped_at_refusal ? "stopped at a refused message" : "retrying");
			eb_relay_pause(backoff_ms);
			backoff_ms = Min(backoff_ms * 2, 30000L);
		}
		else
			backoff_ms = 1000;
	}
	eb_relay_set_state("stopped");
	proc_exit(0);
}
