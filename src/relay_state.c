/*-------------------------------------------------------------------------
 *
 * relay_state.c
 *	  The relay worker's ground floor: its status in shared memory (the
 *	  state and last error that relay_status shows), the state of the
 *	  current session that every module of the worker reads, and the
 *	  rate-limited error log.  Also what other processes use to reach the
 *	  relay: the name of a database's slot, and waking the worker.
 *
 * Calls nothing of the relay's other files: relay_kafka.c (the Kafka
 * client), relay_ack.c (acknowledgements), relay_backfill.c and
 * relay_worker.c (the session) build on it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/timestamp.h"

#include "settings.h"
#include "relay_int.h"
#include "shmem.h"

EbRelayShared *eb_my_relay = NULL;
MemoryContext eb_session_cxt = NULL;
bool		eb_session_failed = false;
volatile sig_atomic_t eb_shutdown_requested = false;
bool		eb_session_active = false;
bool		eb_decoding = false;

/*
 * Error logging is rate-limited per key: the same key at most once a
 * minute.  The key is the message itself, except for the errors that all
 * mean "the brokers cannot be reached", which share one key whatever their
 * text (librdkafka reports each broker's connection failure and "N/M
 * brokers are down", newer versions again and again, with counters in the
 * text).  The last few keys are remembered, so that alternating messages
 * are limited too.
 */
#define EB_LOG_KEYS 16
typedef struct EbLoggedError
{
	char		key[EB_RELAY_ERROR_LEN];
	TimestampTz at;
} EbLoggedError;
static EbLoggedError logged_errors[EB_LOG_KEYS];

/* The name of a database's relay slot. */
void
eb_relay_slot_name(Oid dboid, char *buf)
{
	snprintf(buf, NAMEDATALEN, "pg_eventbus_relay_%u", dboid);
}

/* Wakes the relay worker (called at commit of transactions that published). */
void
eb_relay_wake(void)
{
	EbRelayShared *r = eb_relay_state(MyDatabaseId);

	/*
	 * Without the relay's spinlock (every publishing commit comes here).  A
	 * relay that registers its latch after this read looks for WAL to
	 * decode after registering, so it misses nothing.
	 */
	if (r != NULL)
		eb_set_published_latch(&r->latch);
}

void
eb_relay_set_state(const char *state)
{
	SpinLockAcquire(&eb_my_relay->mutex);
	strlcpy(eb_my_relay->state, state, EB_RELAY_STATE_LEN);
	SpinLockRelease(&eb_my_relay->mutex);
}

/*
 * Should a message with this key be logged now?  True at most once per
 * EB_ERROR_LOG_INTERVAL_MS per key; remembers that it was.
 */
bool
eb_relay_log_due(const char *key, TimestampTz now)
{
	int			i;
	int			oldest = 0;

	for (i = 0; i < EB_LOG_KEYS; i++)
	{
		if (logged_errors[i].at != 0 && strcmp(logged_errors[i].key, key) == 0)
		{
			if (!TimestampDifferenceExceeds(logged_errors[i].at, now, EB_ERROR_LOG_INTERVAL_MS))
				return false;
			logged_errors[i].at = now;
			return true;
		}
		if (logged_errors[i].at < logged_errors[oldest].at)
			oldest = i;
	}
	strlcpy(logged_errors[oldest].key, key, EB_RELAY_ERROR_LEN);
	logged_errors[oldest].at = now;
	return true;
}

/*
 * Records an error in the status and logs it, at most once a minute per
 * key (NULL: the message is its own key).
 */
void
eb_relay_error_keyed(const char *msg, const char *key)
{
	TimestampTz now = GetCurrentTimestamp();

	SpinLockAcquire(&eb_my_relay->mutex);
	strlcpy(eb_my_relay->last_error, msg, EB_RELAY_ERROR_LEN);
	eb_my_relay->last_error_at = now;
	eb_my_relay->last_error_resolved_at = 0;
	SpinLockRelease(&eb_my_relay->mutex);

	if (eb_relay_log_due(key ? key : msg, now))
		ereport(WARNING,
				(errmsg("pg_eventbus relay: %s", msg)));
}

void
eb_relay_error(const char *msg)
{
	eb_relay_error_keyed(msg, NULL);
}
