/*-------------------------------------------------------------------------
 *
 * relay_worker.c
 *	  The Kafka relay worker.
 *
 * Started by the launcher (launcher.c) in each database it serves where
 * the extension is installed, when eventbus.kafka_brokers is set; its
 * status is that database's entry in shared memory.  It owns the logical
 * replication slot pg_eventbus_relay_<db oid> (created on first start,
 * output plugin: this library; how it is created, checked and reported is
 * in relay_slot.c) and decodes WAL in its own process: no replication
 * connection, no pg_hba.conf entry.
 *
 * A session acquires the slot, creates an idempotent Kafka producer and a
 * decoding context, then loops: read WAL up to the flush pointer, let the
 * output plugin (relay_output.c) hand every committed event of a relayed
 * topic and every outbox message to the producer, serve delivery reports,
 * and wait on the latch (set at commit by publishing transactions) when
 * caught up.
 *
 * Delivery guarantee: decoded transactions enter a FIFO in commit order,
 * each with a count of messages not yet acknowledged.  The slot's
 * confirmed position moves only to the end of the newest transaction of the
 * fully acknowledged prefix (LogicalConfirmReceivedLocation, then the slot
 * is saved, at most every 200 ms).  When nothing is in flight and all WAL
 * has been read, the slot is confirmed at the read position, so an idle
 * database does not retain WAL.  After a crash, an outage or any failed
 * delivery, decoding restarts from the confirmed position: nothing
 * committed is lost, and messages sent again carry the same event id and
 * LSN headers.  Messages never time out in the producer (message.timeout.ms
 * = 0 unless configured), so a broker outage stalls the relay instead of
 * failing it; reading WAL pauses while eventbus.relay_max_in_flight
 * messages are unacknowledged.
 *
 * librdkafka runs its own threads, but every callback used here (delivery
 * reports, errors, logs via the log queue) is served by rd_kafka_poll() in
 * this process's main thread.  The producer lives for one session.
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

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "access/xlog.h"
#include "access/xlogutils.h"
#include "commands/extension.h"
#include "lib/ilist.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "replication/decode.h"
#include "replication/logical.h"
#include "replication/slot.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/pg_lsn.h"
#include "utils/varlena.h"

#include "pg_eventbus.h"
#include "compat.h"
#include "privileged.h"
#include "relay.h"
#include "shmem.h"

char	   *eb_kafka_brokers = NULL;
char	   *eb_kafka_properties = NULL;
char	   *eb_kafka_properties_file = NULL;
int			eb_relay_max_in_flight = 100000;

/*
 * The confirmed position is written to disk at most this often (and by
 * checkpoints, at shutdown and whenever the slot's restart point or xmin
 * moves): each save fsyncs, which stalls the loop.  After a crash the relay
 * may send again what was acknowledged since the last save.
 */
#define EB_SLOT_SAVE_MS 10000
#define EB_STATS_MS 100
#define EB_LATENCY_RING 2048
#define EB_ERROR_LOG_INTERVAL_MS 60000
/* messages in flight and no acknowledgement for this long: 'not acknowledging' */
#define EB_ACK_STALL_MS 10000
/* while the brokers are down and nothing is in flight, probe them this often */
#define EB_BROKER_PROBE_MS 1000
/* a session checks this often that the extension is still installed */
#define EB_EXTENSION_CHECK_MS 2000
/* room for the relay's headers and a record's framing above an event's size */
#define EB_RELAY_RECORD_OVERHEAD 65536

/* A decoded transaction waiting for its messages to be acknowledged. */
typedef struct EbRelayTxn
{
	dlist_node	node;
	XLogRecPtr	end_lsn;
	TimestampTz commit_time;
	int64		pending;		/* messages not yet acknowledged */
	int64		messages;
	bool		committed;		/* commit callback seen */
	bool		failed;
	int			refused;		/* messages Kafka refused for good, their
								 * policy not applied yet */
} EbRelayTxn;

/* What the delivery report needs to know about a message. */
typedef struct EbRelayMsgRef
{
	EbRelayTxn *txn;
	EbPartShared *part;
	int64		uid_check;
	int32		partition;
	int64		position;
	size_t		bytes;
	bool		outbox;
	int32		topic_id;		/* -1 for outbox messages */
	XLogRecPtr	lsn;
	char	   *topic;			/* "" for outbox messages */
	char	   *event_id;
	EbRelayAckFn on_ack;		/* see EbRelayMessage */
	void	   *on_ack_arg;
} EbRelayMsgRef;

/*
 * A message Kafka refused for good (a permanent error), waiting for the
 * main loop to apply its topic's policy: 'dead_letter' records it in
 * eventbus.relay_dead_letter (then its transaction may be confirmed),
 * 'stop' ends the session there (relaying waits and retries).
 */
typedef struct EbRelayRefusal
{
	dlist_node	node;
	EbRelayTxn *txn;
	int32		topic_id;
	int32		partition;
	int64		position;
	XLogRecPtr	lsn;
	bool		outbox;
	char		topic[NAMEDATALEN];
	char		kafka_topic[EB_KAFKA_TOPIC_MAX + 1];
	char		event_id[40];
	char		error[256];
} EbRelayRefusal;

/* A Kafka topic whose metadata said it cannot be used (cached briefly). */
typedef struct EbKafkaTopic
{
	char		name[EB_KAFKA_TOPIC_MAX + 1];	/* hash key */
	TimestampTz fetched_at;
	rd_kafka_resp_err_t err;	/* what the metadata said about the topic */
} EbKafkaTopic;

/*
 * How a relayed topic's partitions map to its Kafka topic's, decided once
 * (eventbus.relay_partitioning) and kept: by_partition, partition p goes to
 * Kafka partition p; otherwise the key decides (Kafka's partitioner).
 */
typedef struct EbMappingKey
{
	int32		topic_id;
	char		kafka_topic[EB_KAFKA_TOPIC_MAX + 1];
} EbMappingKey;

typedef struct EbMapping
{
	EbMappingKey key;			/* hash key */
	int32		local_partitions;
	int32		kafka_partitions;
	bool		by_partition;
	bool		persisted;		/* in eventbus.relay_partitioning */
} EbMapping;

static rd_kafka_t *producer = NULL;
static bool session_active = false;
static bool session_failed = false;
static dlist_head txns = DLIST_STATIC_INIT(txns);
static dlist_head refusals = DLIST_STATIC_INIT(refusals);
/* the session ended at a refused message of a topic with on_error 'stop' */
static bool stopped_at_refusal = false;
static EbRelayTxn *current_txn = NULL;
static int64 in_flight = 0;
static MemoryContext session_cxt = NULL;
static HTAB *kafka_topics = NULL;
/* the properties file's digest when the producer was created */
typedef struct EbFileDigest
{
	uint64		hash;
	uint64		size;
	bool		exists;
} EbFileDigest;
static EbFileDigest properties_file_digest;
static HTAB *mappings = NULL;	/* lives as long as the process */
static int	mappings_unpersisted = 0;
static XLogRecPtr confirmed = InvalidXLogRecPtr;
static bool slot_dirty = false;
static TimestampTz last_save = 0;
static volatile sig_atomic_t shutdown_requested = false;
static TimestampTz extension_checked_at = 0;

/* counters published to shared memory */
/* written by librdkafka when the main queue gets events; read end polled */
static int	kafka_event_fd[2] = {-1, -1};

static bool brokers_down = false;	/* librdkafka: all broker connections down */
static TimestampTz in_flight_since = 0; /* when in_flight last rose from 0 */
static TimestampTz broker_probed_at = 0;

static uint64 stat_events = 0;
static uint64 stat_bytes = 0;
static TimestampTz stat_last_ack = 0;
static TimestampTz stats_published_at = 0;
static double latency_ring[EB_LATENCY_RING];
static int	latency_count = 0;
static int	latency_next = 0;

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
#define EB_LOG_KEY_BROKERS "\001brokers"
typedef struct EbLoggedError
{
	char		key[EB_RELAY_ERROR_LEN];
	TimestampTz at;
} EbLoggedError;
static EbLoggedError logged_errors[EB_LOG_KEYS];

/* the last connection error of the current broker outage (names the broker) */
static char broker_error[EB_RELAY_ERROR_LEN];

bool
eb_relay_session_active(void)
{
	return session_active;
}

/* This database's relay status (shmem.h); set at start. */
static EbRelayShared *my_relay = NULL;

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
	Latch	   *latch;

	if (r == NULL)
		return;
	SpinLockAcquire(&r->mutex);
	latch = r->latch;
	SpinLockRelease(&r->mutex);
	if (latch != NULL)
		SetLatch(latch);
}

static void
eb_relay_set_state(const char *state)
{
	SpinLockAcquire(&my_relay->mutex);
	strlcpy(my_relay->state, state, EB_RELAY_STATE_LEN);
	SpinLockRelease(&my_relay->mutex);
}

/*
 * Should a message with this key be logged now?  True at most once per
 * EB_ERROR_LOG_INTERVAL_MS per key; remembers that it was.
 */
static bool
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
static void
eb_relay_error_keyed(const char *msg, const char *key)
{
	TimestampTz now = GetCurrentTimestamp();

	SpinLockAcquire(&my_relay->mutex);
	strlcpy(my_relay->last_error, msg, EB_RELAY_ERROR_LEN);
	my_relay->last_error_at = now;
	my_relay->last_error_resolved_at = 0;
	SpinLockRelease(&my_relay->mutex);

	if (eb_relay_log_due(key ? key : msg, now))
		ereport(WARNING,
				(errmsg("pg_eventbus relay: %s", msg)));
}

static void
eb_relay_error(const char *msg)
{
	eb_relay_error_keyed(msg, NULL);
}

/*
 * A librdkafka error text without its variable suffix, such as " (after
 * 0ms in state CONNECT, 3 identical error(s) suppressed)".
 */
static void
eb_kafka_error_text(const char *reason, char *buf, size_t len)
{
	char	   *suffix;

	strlcpy(buf, reason, len);
	suffix = strstr(buf, " (after ");
	if (suffix != NULL && strstr(suffix, "ms in state ") != NULL &&
		suffix[strlen(suffix) - 1] == ')')
		*suffix = '\0';
}

/* Errors that mean the brokers cannot be reached (for now). */
static bool
eb_kafka_error_is_connection(int err)
{
	switch (err)
	{
		case RD_KAFKA_RESP_ERR__TRANSPORT:
		case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
		case RD_KAFKA_RESP_ERR__RESOLVE:
		case RD_KAFKA_RESP_ERR__TIMED_OUT:
		case RD_KAFKA_RESP_ERR__SSL:
			return true;
		default:
			return false;
	}
}

static int
eb_cmp_double(const void *a, const void *b)
{
	double		x = *(const double *) a;
	double		y = *(const double *) b;

	return x < y ? -1 : (x > y ? 1 : 0);
}

/* Copies the counters to shared memory, at most every EB_STATS_MS unless forced. */
static void
eb_relay_publish_stats(bool force)
{
	TimestampTz now = GetCurrentTimestamp();
	double		p50 = 0,
				p99 = 0;
	bool		have = latency_count > 0;

	if (!force && !TimestampDifferenceExceeds(stats_published_at, now, EB_STATS_MS))
		return;
	stats_published_at = now;
	if (have)
	{
		double		sorted[EB_LATENCY_RING];

		memcpy(sorted, latency_ring, sizeof(double) * latency_count);
		qsort(sorted, latency_count, sizeof(double), eb_cmp_double);
		p50 = sorted[(latency_count - 1) / 2];
		p99 = sorted[(int) ((latency_count - 1) * 0.99)];
	}
	SpinLockAcquire(&my_relay->mutex);
	my_relay->events_relayed = stat_events;
	my_relay->bytes_relayed = stat_bytes;
	my_relay->in_flight = in_flight;
	if (stat_last_ack != 0)
		my_relay->last_ack_at = stat_last_ack;
	/* an acknowledgement after the last error: that error is resolved */
	if (my_relay->last_error_at != 0 &&
		my_relay->last_error_resolved_at == 0 &&
		stat_last_ack > my_relay->last_error_at)
		my_relay->last_error_resolved_at = stat_last_ack;
	if (session_active)
	{
		const char *state = "running";

		if (brokers_down)
			state = "broker unreachable";
		else if (in_flight > 0 &&
				 TimestampDifferenceExceeds(Max(stat_last_ack, in_flight_since), now,
											EB_ACK_STALL_MS))
			state = "not acknowledging";
		strlcpy(my_relay->state, state, EB_RELAY_STATE_LEN);
	}
	my_relay->have_latency = have;
	my_relay->latency_p50_ms = p50;
	my_relay->latency_p99_ms = p99;
	SpinLockRelease(&my_relay->mutex);
}

/* ---------- librdkafka callbacks (served by rd_kafka_poll) ---------- */

/*
 * Errors that refuse one message for good: sending it again cannot help.
 * Other delivery errors (timeouts, leader changes, a broker gone) are
 * retried: relaying starts again from the confirmed position, with
 * back-off.
 */
static bool
eb_kafka_error_is_permanent(rd_kafka_resp_err_t err)
{
	switch (err)
	{
		case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
		case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
		case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
		case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
		case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
		case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
		case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
		case RD_KAFKA_RESP_ERR_INVALID_RECORD:
		case RD_KAFKA_RESP_ERR_INVALID_TIMESTAMP:
		case RD_KAFKA_RESP_ERR_POLICY_VIOLATION:
		case RD_KAFKA_RESP_ERR__INVALID_ARG:
			return true;
		default:
			return false;
	}
}

/*
 * Remembers a message Kafka refused for good; its transaction is not
 * confirmed until the main loop applied the topic's policy
 * (eb_relay_apply_policies).  No table access here: this runs inside
 * librdkafka callbacks and decoding.
 */
static void
eb_relay_refused(EbRelayTxn *t, EbRelayMsgRef *ref, const char *kafka_topic,
				 rd_kafka_resp_err_t err)
{
	EbRelayRefusal *r = MemoryContextAllocZero(session_cxt, sizeof(EbRelayRefusal));

	r->txn = t;
	r->topic_id = ref->topic_id;
	r->partition = ref->partition;
	r->position = ref->position;
	r->lsn = ref->lsn;
	r->outbox = ref->outbox;
	strlcpy(r->topic, ref->topic, sizeof(r->topic));
	strlcpy(r->kafka_topic, kafka_topic, sizeof(r->kafka_topic));
	strlcpy(r->event_id, ref->event_id, sizeof(r->event_id));
	snprintf(r->error, sizeof(r->error), "%s (%s)", rd_kafka_err2str(err),
			 rd_kafka_err2name(err));
	t->refused++;
	dlist_push_tail(&refusals, &r->node);
	if (ref->on_ack)
		ref->on_ack(ref->on_ack_arg);
}

static void
eb_delivery_cb(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
	EbRelayMsgRef *ref = (EbRelayMsgRef *) msg->_private;

	if (ref == NULL)
		return;
	in_flight--;
	ref->txn->pending--;
	if (msg->err && eb_kafka_error_is_permanent(msg->err))
		eb_relay_refused(ref->txn, ref, rd_kafka_topic_name(msg->rkt), msg->err);
	else if (msg->err)
	{
		if (msg->err != RD_KAFKA_RESP_ERR__PURGE_QUEUE &&
			msg->err != RD_KAFKA_RESP_ERR__PURGE_INFLIGHT)
			eb_relay_error(psprintf("delivery to Kafka topic \"%s\" failed: %s; relaying again from the last confirmed position",
									rd_kafka_topic_name(msg->rkt),
									rd_kafka_err2str(msg->err)));
		ref->txn->failed = true;
		session_failed = true;
	}
	else
	{
		stat_events++;
		stat_bytes += ref->bytes;
		stat_last_ack = GetCurrentTimestamp();
		brokers_down = false;
		broker_error[0] = '\0';
		if (ref->on_ack)
			ref->on_ack(ref->on_ack_arg);
		if (ref->outbox)
			pg_atomic_fetch_add_u64(&my_relay->outbox_relayed, 1);
		else if (ref->part != NULL)
		{
			LWLockAcquire(&ref->part->lock, LW_EXCLUSIVE);
			if (eb_part_key_matches(ref->part, MyDatabaseId, ref->uid_check, ref->partition) &&
				ref->part->relayed_position < ref->position)
				ref->part->relayed_position = ref->position;
			if (eb_part_key_matches(ref->part, MyDatabaseId, ref->uid_check, ref->partition))
				pg_atomic_fetch_add_u64(&ref->part->stat_relayed, 1);
			LWLockRelease(&ref->part->lock);
		}
	}
	pfree(ref);
}

/*
 * Errors librdkafka reports outside deliveries.  Connection errors of any
 * broker and "N/M brokers are down" are one condition, the brokers being
 * unreachable: one status, one log key, and last_error keeps the most
 * informative text (a connection error names the broker and the cause;
 * "N/M brokers are down" alone names neither, so the last connection error
 * or the bootstrap servers are added to it).
 */
static void
eb_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	char		text[EB_RELAY_ERROR_LEN];
	char		msg[EB_RELAY_ERROR_LEN];

	eb_kafka_error_text(reason, text, sizeof(text));
	if (err == RD_KAFKA_RESP_ERR__FATAL)
		session_failed = true;
	if (!eb_kafka_error_is_connection(err))
	{
		snprintf(msg, sizeof(msg), "Kafka: %s", text);
		eb_relay_error(msg);
		return;
	}
	if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
	{
		brokers_down = true;
		if (broker_error[0] != '\0')
			snprintf(msg, sizeof(msg), "Kafka brokers unreachable (%s): %s",
					 text, broker_error);
		else
			snprintf(msg, sizeof(msg), "Kafka brokers unreachable (%s; bootstrap servers %s)",
					 text, eb_kafka_brokers ? eb_kafka_brokers : "");
	}
	else
	{
		strlcpy(broker_error, text, sizeof(broker_error));
		snprintf(msg, sizeof(msg), "Kafka broker unreachable: %s", text);
	}
	eb_relay_error_keyed(msg, EB_LOG_KEY_BROKERS);
}

/*
 * librdkafka's own log lines.  Connection failures ("FAIL") also come as
 * errors (eb_error_cb), which are rate-limited: those are debug output
 * here.  Other errors are logged at most once a minute per facility.
 */
static void
eb_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	char		key[64];

	/* syslog levels: 3 and below are errors */
	snprintf(key, sizeof(key), "\001librdkafka %s", fac);
	if (level > 3 || strcmp(fac, "FAIL") == 0 ||
		!eb_relay_log_due(key, GetCurrentTimestamp()))
		ereport(DEBUG2,
				(errmsg("pg_eventbus relay: librdkafka %s: %s", fac, buf)));
	else
		ereport(LOG,
				(errmsg("pg_eventbus relay: librdkafka %s: %s", fac, buf)));
}

/* ---------- producer ---------- */

static bool
eb_secret_property(const char *name)
{
	return strstr(name, "password") != NULL || strstr(name, "secret") != NULL ||
		strstr(name, "sasl") != NULL || strstr(name, "ssl.key") != NULL ||
		strstr(name, "token") != NULL || strstr(name, "jaas") != NULL;
}

/* Sets a property; errors never show the value of a secret property. */
static bool
eb_conf_set(rd_kafka_conf_t *conf, const char *name, const char *value,
			char *err, size_t errlen)
{
	char		errstr[512];

	if (rd_kafka_conf_set(conf, name, value, errstr, sizeof(errstr)) == RD_KAFKA_CONF_OK)
		return true;
	if (eb_secret_property(name))
		snprintf(err, errlen, "invalid Kafka property \"%s\"", name);
	else
		snprintf(err, errlen, "invalid Kafka property \"%s\": %s", name, errstr);
	return false;
}

/*
 * Applies eventbus.kafka_properties: key=value pairs separated by commas;
 * a comma inside a value is written \,.
 */
static bool
eb_conf_apply_properties(rd_kafka_conf_t *conf, char *err, size_t errlen)
{
	const char *p = eb_kafka_properties ? eb_kafka_properties : "";
	StringInfoData item;
	int			n = 0;

	initStringInfo(&item);
	for (;;)
	{
		if (*p == '\\' && p[1] == ',')
		{
			appendStringInfoChar(&item, ',');
			p += 2;
			continue;
		}
		if (*p != ',' && *p != '\0')
		{
			appendStringInfoChar(&item, *p++);
			continue;
		}
		/* end of an item */
		n++;
		{
			char	   *s = item.data;
			char	   *eq;
			char	   *end;

			while (*s == ' ')
				s++;
			end = s + strlen(s);
			while (end > s && end[-1] == ' ')
				*--end = '\0';
			if (*s != '\0')
			{
				eq = strchr(s, '=');
				if (eq == NULL || eq == s)
				{
					snprintf(err, errlen, "eventbus.kafka_properties: item %d is not key=value", n);
					return false;
				}
				*eq = '\0';
				end = eq;
				while (end > s && end[-1] == ' ')
					*--end = '\0';
				eq++;
				while (*eq == ' ')
					eq++;
				if (!eb_conf_set(conf, s, eq, err, errlen))
					return false;
			}
		}
		resetStringInfo(&item);
		if (*p == '\0')
			break;
		p++;
	}
	return true;
}

/*
 * Applies eventbus.kafka_properties_file: one key=value per line; blank
 * lines and lines starting with # are ignored.
 */
static bool
eb_conf_apply_file(rd_kafka_conf_t *conf, char *err, size_t errlen)
{
	FILE	   *f;
	char		line[8192];
	int			lineno = 0;
	bool		ok = true;

	if (eb_kafka_properties_file == NULL || eb_kafka_properties_file[0] == '\0')
		return true;
	f = AllocateFile(eb_kafka_properties_file, "r");
	if (f == NULL)
	{
		snprintf(err, errlen, "could not open eventbus.kafka_properties_file \"%s\": %m",
				 eb_kafka_properties_file);
		return false;
	}
	while (ok && fgets(line, sizeof(line), f) != NULL)
	{
		char	   *s = line;
		char	   *eq;
		char	   *end;

		lineno++;
		end = s + strlen(s);
		while (end > s && (end[-1] == '\n' || end[-1] == '\r' || end[-1] == ' '))
			*--end = '\0';
		while (*s == ' ')
			s++;
		if (*s == '\0' || *s == '#')
			continue;
		eq = strchr(s, '=');
		if (eq == NULL || eq == s)
		{
			snprintf(err, errlen, "eventbus.kafka_properties_file: line %d is not key=value", lineno);
			ok = false;
			break;
		}
		*eq = '\0';
		end = eq;
		while (end > s && end[-1] == ' ')
			*--end = '\0';
		eq++;
		while (*eq == ' ')
			eq++;
		ok = eb_conf_set(conf, s, eq, err, errlen);
	}
	FreeFile(f);
	return ok;
}

/*
 * A digest of eventbus.kafka_properties_file's contents as they are now
 * (a 64-bit hash chained over the contents, and their size), so that a
 * reload notices a file changed in place, such as a rotated secret.  No
 * file or setting: all zeroes; an unreadable file: all ones.
 */
static void
eb_properties_file_digest(EbFileDigest *digest)
{
	FILE	   *f;
	char		buf[8192];
	size_t		n;

	memset(digest, 0, sizeof(*digest));
	if (eb_kafka_properties_file == NULL || eb_kafka_properties_file[0] == '\0')
		return;
	f = AllocateFile(eb_kafka_properties_file, "r");
	if (f == NULL)
		return;
	digest->exists = true;
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
	{
		digest->hash = hash_bytes_extended((const unsigned char *) buf, (int) n,
										   digest->hash);
		digest->size += n;
	}
	if (ferror(f))
		memset(digest, 0xff, sizeof(*digest));
	explicit_bzero(buf, sizeof(buf));
	FreeFile(f);
}

static rd_kafka_t *
eb_producer_create(char *err, size_t errlen)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	char		errstr[512];
	char		buf[32];
	char		maxbytes[32];
	rd_kafka_t *rk;
	rd_kafka_queue_t *mainq;

	/* before the file is read: a change after this is seen at the next reload */
	eb_properties_file_digest(&properties_file_digest);
	snprintf(buf, sizeof(buf), "%d", Max(eb_relay_max_in_flight * 2, 1000));
	/*
	 * The producer must take the largest event publish() accepts, plus the
	 * headers the relay adds and the record's own overhead; librdkafka's
	 * default (1000000 bytes) is below eventbus.max_event_size's default.
	 */
	snprintf(maxbytes, sizeof(maxbytes), "%d",
			 Min(Max(eb_max_event_size + EB_RELAY_RECORD_OVERHEAD, 1000000), 1000000000));
	if (!eb_conf_set(conf, "bootstrap.servers", eb_kafka_brokers, err, errlen) ||
		!eb_conf_set(conf, "message.max.bytes", maxbytes, err, errlen) ||
		!eb_conf_set(conf, "client.id", "pg_eventbus", err, errlen) ||
		!eb_conf_set(conf, "enable.idempotence", "true", err, errlen) ||
		!eb_conf_set(conf, "partitioner", "murmur2_random", err, errlen) ||
		!eb_conf_set(conf, "message.timeout.ms", "0", err, errlen) ||
		!eb_conf_set(conf, "linger.ms", "1", err, errlen) ||
		!eb_conf_set(conf, "queue.buffering.max.messages", buf, err, errlen) ||
		!eb_conf_set(conf, "log.queue", "true", err, errlen) ||
		!eb_conf_apply_properties(conf, err, errlen) ||
		!eb_conf_apply_file(conf, err, errlen))
	{
		rd_kafka_conf_destroy(conf);
		return NULL;
	}
	rd_kafka_conf_set_dr_msg_cb(conf, eb_delivery_cb);
	rd_kafka_conf_set_error_cb(conf, eb_error_cb);
	rd_kafka_conf_set_log_cb(conf, eb_log_cb);

	rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
	if (rk == NULL)
	{
		rd_kafka_conf_destroy(conf);
		snprintf(err, errlen, "could not create the Kafka producer: %s", errstr);
		return NULL;
	}
	rd_kafka_set_log_queue(rk, NULL);

	/* librdkafka writes a byte to the pipe when delivery reports wait */
	if (kafka_event_fd[0] < 0 && pipe2(kafka_event_fd, O_NONBLOCK | O_CLOEXEC) != 0)
	{
		snprintf(err, errlen, "could not create a pipe for the Kafka producer: %m");
		kafka_event_fd[0] = kafka_event_fd[1] = -1;
		rd_kafka_destroy(rk);
		return NULL;
	}
	mainq = rd_kafka_queue_get_main(rk);
	rd_kafka_queue_io_event_enable(mainq, kafka_event_fd[1], "1", 1);
	rd_kafka_queue_destroy(mainq);
	return rk;
}

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
		AddWaitEventToSet(set, WL_SOCKET_READABLE, kafka_event_fd[0], NULL, NULL);
	}
	ModifyWaitEvent(set, latch_pos, WL_LATCH_SET, paused ? NULL : MyLatch);
	n = WaitEventSetWait(set, timeout_ms, events, lengthof(events), PG_WAIT_EXTENSION);
	for (i = 0; i < n; i++)
		rc |= events[i].events;
	return rc;
}

/* Empties the producer's event pipe; the reports are served by rd_kafka_poll. */
static void
eb_drain_event_fd(void)
{
	char		buf[64];

	while (read(kafka_event_fd[0], buf, sizeof(buf)) > 0)
		;
}

/* Destroys the producer; nothing can be called back afterwards. */
static void
eb_producer_destroy(void)
{
	if (producer == NULL)
		return;
	rd_kafka_purge(producer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT |
				   RD_KAFKA_PURGE_F_NON_BLOCKING);
	rd_kafka_destroy(producer);
	producer = NULL;
}

/*
 * What the brokers' metadata says of one topic: its partition count, -2
 * with *topic_err set when the topic cannot be used, 0 when the metadata
 * does not list it.
 */
static int
eb_metadata_topic(const struct rd_kafka_metadata *md, const char *topic,
				  rd_kafka_resp_err_t *topic_err)
{
	for (int i = 0; i < md->topic_cnt; i++)
	{
		const struct rd_kafka_metadata_topic *t = &md->topics[i];

		if (strcmp(t->topic, topic) != 0)
			continue;
		if (t->err == RD_KAFKA_RESP_ERR_NO_ERROR && t->partition_cnt > 0)
			return t->partition_cnt;
		if (t->err != RD_KAFKA_RESP_ERR_NO_ERROR &&
			t->err != RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE)
		{
			*topic_err = t->err;
			return -2;
		}
		return -1;
	}
	return 0;
}

/*
 * Partition count of a Kafka topic from the brokers' metadata: -1 if the
 * brokers did not answer, -2 if they answered that the topic cannot be used
 * (unknown, not authorized; then the delivery reports say why).  Such
 * answers are remembered for ten seconds.
 *
 * The cluster's metadata is asked first, without naming the topic: asking
 * for one topic the client has not seen yet, when the brokers answer with
 * an error for it, crashes a broker thread of librdkafka 2.8 (Debian
 * trixie).  A topic the cluster does not list is then asked for by name,
 * which lets brokers that create topics on demand create it.
 */
static int
eb_kafka_partition_count(const char *topic, rd_kafka_resp_err_t *topic_err)
{
	EbKafkaTopic *e;
	bool		found;
	char		key[EB_KAFKA_TOPIC_MAX + 1];
	TimestampTz now = GetCurrentTimestamp();
	rd_kafka_topic_t *rkt;
	const struct rd_kafka_metadata *md;
	int			partitions = -1;

	if (kafka_topics == NULL)
	{
		HASHCTL		ctl;

		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = sizeof(key);
		ctl.entrysize = sizeof(EbKafkaTopic);
		ctl.hcxt = TopMemoryContext;
		kafka_topics = hash_create("pg_eventbus Kafka topics", 32, &ctl,
								   HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	}
	memset(key, 0, sizeof(key));
	strlcpy(key, topic, sizeof(key));
	*topic_err = RD_KAFKA_RESP_ERR_NO_ERROR;
	e = hash_search(kafka_topics, key, HASH_FIND, NULL);
	if (e != NULL && !TimestampDifferenceExceeds(e->fetched_at, now, 10000))
	{
		*topic_err = e->err;
		return -2;
	}

	if (rd_kafka_metadata(producer, 1, NULL, &md, 2000) != RD_KAFKA_RESP_ERR_NO_ERROR)
		return -1;
	partitions = eb_metadata_topic(md, topic, topic_err);
	rd_kafka_metadata_destroy(md);
	if (partitions == 0)
	{
		partitions = -1;
		rkt = rd_kafka_topic_new(producer, topic, NULL);
		if (rkt != NULL)
		{
			if (rd_kafka_metadata(producer, 0, rkt, &md, 2000) == RD_KAFKA_RESP_ERR_NO_ERROR)
			{
				partitions = eb_metadata_topic(md, topic, topic_err);
				if (partitions == 0)
					partitions = -1;
				rd_kafka_metadata_destroy(md);
			}
			rd_kafka_topic_destroy(rkt);
		}
	}
	if (partitions == -2)
	{
		e = hash_search(kafka_topics, key, HASH_ENTER, &found);
		e->fetched_at = now;
		e->err = *topic_err;
	}
	return partitions;
}

static void
eb_mappings_init(void)
{
	HASHCTL		ctl;

	if (mappings != NULL)
		return;
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(EbMappingKey);
	ctl.entrysize = sizeof(EbMapping);
	ctl.hcxt = TopMemoryContext;
	mappings = hash_create("pg_eventbus relay partition mappings", 32, &ctl,
						   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
}

/*
 * Reads the decided mappings (eventbus.relay_partitioning) into memory.
 * Called outside decoding, in a transaction of its own.
 */
static void
eb_mappings_load(void)
{
	EbSpi		spi;
	uint64		i;

	eb_mappings_init();
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	eb_spi_begin(&spi, false);
	eb_spi_exec("SELECT topic_id, kafka_topic, local_partitions, kafka_partitions, by_partition FROM eventbus.relay_partitioning",
				0, NULL, NULL, NULL, true);
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		EbMappingKey key;
		EbMapping  *m;
		char	   *kafka_topic = SPI_getvalue(tup, desc, 2);

		memset(&key, 0, sizeof(key));
		key.topic_id = DatumGetInt32(SPI_getbinval(tup, desc, 1, &isnull));
		strlcpy(key.kafka_topic, kafka_topic, sizeof(key.kafka_topic));
		m = hash_search(mappings, &key, HASH_ENTER, NULL);
		m->local_partitions = DatumGetInt32(SPI_getbinval(tup, desc, 3, &isnull));
		m->kafka_partitions = DatumGetInt32(SPI_getbinval(tup, desc, 4, &isnull));
		m->by_partition = DatumGetBool(SPI_getbinval(tup, desc, 5, &isnull));
		m->persisted = true;
	}
	eb_spi_end(&spi);
	PopActiveSnapshot();
	CommitTransactionCommand();
	mappings_unpersisted = 0;
}

/*
 * Writes the mappings decided since the last call to
 * eventbus.relay_partitioning, durably, before the slot is confirmed past
 * any message sent with them.  Outside decoding, in a transaction of its
 * own.
 */
static void
eb_mappings_persist(void)
{
	HASH_SEQ_STATUS seq;
	EbMapping  *m;
	EbSpi		spi;

	if (mappings_unpersisted == 0)
		return;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	eb_spi_begin(&spi, false);
	hash_seq_init(&seq, mappings);
	while ((m = hash_seq_search(&seq)) != NULL)
	{
		Oid			argtypes[5] = {INT4OID, TEXTOID, INT4OID, INT4OID, BOOLOID};
		Datum		values[5];

		if (m->persisted)
			continue;
		values[0] = Int32GetDatum(m->key.topic_id);
		values[1] = CStringGetTextDatum(m->key.kafka_topic);
		values[2] = Int32GetDatum(m->local_partitions);
		values[3] = Int32GetDatum(m->kafka_partitions);
		values[4] = BoolGetDatum(m->by_partition);
		eb_spi_exec("DELETE FROM eventbus.relay_partitioning WHERE topic_id = $1 AND kafka_topic = $2",
					2, argtypes, values, NULL, false);
		eb_spi_exec("INSERT INTO eventbus.relay_partitioning (topic_id, kafka_topic, local_partitions, kafka_partitions, by_partition) VALUES ($1, $2, $3, $4, $5)",
					5, argtypes, values, NULL, false);
	}
	eb_spi_end(&spi);
	PopActiveSnapshot();
	CommitTransactionCommand();
	/* durable before the slot moves on, whatever synchronous_commit says */
	XLogFlush(XactLastCommitEnd);

	hash_seq_init(&seq, mappings);
	while ((m = hash_seq_search(&seq)) != NULL)
		m->persisted = true;
	mappings_unpersisted = 0;
}

/*
 * The Kafka partition for an event: from the topic's mapping, decided the
 * first time the relay sends an event of the topic to this Kafka topic
 * (or after the local topic grew).  Deciding needs the Kafka topic's
 * partition count: while the brokers do not answer, this waits (the
 * decision must never depend on an outage).  Returns false if relaying
 * must stop (shutdown, reload); RD_KAFKA_PARTITION_UA in *partition when
 * the key decides or the Kafka topic cannot be used.
 */
static bool
eb_relay_partition(EbRelayMessage *msg, int32 *partition, rd_kafka_resp_err_t *refused)
{
	EbMappingKey key;
	EbMapping  *m;
	int			kafka_partitions;
	rd_kafka_resp_err_t topic_err;

	*partition = RD_KAFKA_PARTITION_UA;
	*refused = RD_KAFKA_RESP_ERR_NO_ERROR;
	if (msg->partition < 0 || msg->topic_id < 0)
		return true;
	eb_mappings_init();
	memset(&key, 0, sizeof(key));
	key.topic_id = msg->topic_id;
	strlcpy(key.kafka_topic, msg->kafka_topic, sizeof(key.kafka_topic));
	m = hash_search(mappings, &key, HASH_FIND, NULL);
	if (m == NULL || m->local_partitions != msg->local_partitions)
	{
		for (;;)
		{
			kafka_partitions = eb_kafka_partition_count(msg->kafka_topic, &topic_err);
			if (kafka_partitions != -1)
				break;
			/* the brokers do not answer: wait for them */
			if (shutdown_requested || ConfigReloadPending)
				return false;
			rd_kafka_poll(producer, 0);
			eb_relay_publish_stats(false);
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 EB_BROKER_PROBE_MS, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
		}
		if (kafka_partitions == -2)
		{
			/* the brokers refuse the topic (not authorized, invalid ...) */
			if (eb_kafka_error_is_permanent(topic_err))
				*refused = topic_err;
			return true;		/* nothing to decide */
		}
		m = hash_search(mappings, &key, HASH_ENTER, NULL);
		m->local_partitions = msg->local_partitions;
		m->kafka_partitions = kafka_partitions;
		m->by_partition = kafka_partitions == msg->local_partitions;
		m->persisted = false;
		mappings_unpersisted++;
		if (!m->by_partition)
			ereport(LOG,
					(errmsg("pg_eventbus relay: topic \"%s\" has %d partitions, Kafka topic \"%s\" has %d: events go to Kafka partitions by key",
							msg->topic ? msg->topic : "?", msg->local_partitions,
							msg->kafka_topic, kafka_partitions)));
	}
	if (m->by_partition)
		*partition = msg->partition;
	return true;
}

/* ---------- called by the output plugin ---------- */

void
eb_relay_txn_begin(void)
{
	EbRelayTxn *t = MemoryContextAllocZero(session_cxt, sizeof(EbRelayTxn));

	dlist_push_tail(&txns, &t->node);
	current_txn = t;
}

void
eb_relay_txn_commit(XLogRecPtr end_lsn, TimestampTz commit_time)
{
	Assert(current_txn != NULL);
	current_txn->end_lsn = end_lsn;
	current_txn->commit_time = commit_time;
	current_txn->committed = true;
	current_txn = NULL;
}

/*
 * Hands a message to the producer.  The Kafka partition is the event's own
 * when the Kafka topic had as many partitions as the local one when the
 * topic's mapping was decided; otherwise librdkafka's murmur2 partitioner
 * picks one from the key (see eb_relay_partition).
 */
void
eb_relay_send(EbRelayMessage *m)
{
	EbRelayTxn *t = current_txn;
	EbRelayMsgRef *ref;
	rd_kafka_headers_t *hdrs;
	rd_kafka_resp_err_t err;
	rd_kafka_resp_err_t refused;
	int32		partition = RD_KAFKA_PARTITION_UA;
	int			i;

	Assert(t != NULL && producer != NULL);
	if (session_failed)
		return;					/* this session will not confirm anything more */

	if (!eb_relay_partition(m, &partition, &refused))
	{
		t->failed = true;
		session_failed = true;
		return;
	}

	{
		size_t		topiclen = m->topic ? strlen(m->topic) + 1 : 1;
		size_t		idlen = m->event_id ? strlen(m->event_id) + 1 : 1;

		ref = MemoryContextAlloc(session_cxt, sizeof(EbRelayMsgRef) + topiclen + idlen);
		ref->topic = (char *) (ref + 1);
		ref->event_id = ref->topic + topiclen;
		memcpy(ref->topic, m->topic ? m->topic : "", topiclen);
		memcpy(ref->event_id, m->event_id ? m->event_id : "", idlen);
	}
	ref->topic_id = m->topic_id;
	ref->lsn = m->lsn;
	ref->txn = t;
	ref->part = m->part;
	ref->uid_check = m->part ? m->part->key.uid : 0;
	ref->partition = m->partition;
	ref->position = m->position;
	ref->bytes = m->valuelen + m->keylen;
	ref->outbox = m->outbox;
	ref->on_ack = m->on_ack;
	ref->on_ack_arg = m->on_ack_arg;
	if (refused != RD_KAFKA_RESP_ERR_NO_ERROR)
	{
		/* the brokers' metadata refuses the topic: not sent */
		eb_relay_refused(t, ref, m->kafka_topic, refused);
		pfree(ref);
		t->messages++;
		return;
	}

	for (;;)
	{
		hdrs = rd_kafka_headers_new(m->nheaders);
		for (i = 0; i < m->nheaders; i++)
			rd_kafka_header_add(hdrs, m->header_names[i], -1,
								m->header_values[i],
								m->header_values[i] ? -1 : 0);
		err = rd_kafka_producev(producer,
								RD_KAFKA_V_TOPIC(m->kafka_topic),
								RD_KAFKA_V_PARTITION(partition),
								RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
								RD_KAFKA_V_KEY(m->key, m->key ? m->keylen : 0),
								RD_KAFKA_V_VALUE((void *) m->value, m->valuelen),
								RD_KAFKA_V_TIMESTAMP(m->timestamp_ms),
								RD_KAFKA_V_HEADERS(hdrs),
								RD_KAFKA_V_OPAQUE(ref),
								RD_KAFKA_V_END);
		if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
			break;
		rd_kafka_headers_destroy(hdrs);
		if (eb_kafka_error_is_permanent(err))
		{
			/* refused at once (too large for the producer, unknown topic) */
			eb_relay_refused(t, ref, m->kafka_topic, err);
			pfree(ref);
			t->messages++;
			return;
		}
		if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL || shutdown_requested)
		{
			if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
				eb_relay_error(psprintf("could not queue a message for Kafka topic \"%s\": %s",
										m->kafka_topic, rd_kafka_err2str(err)));
			pfree(ref);
			t->failed = true;
			session_failed = true;
			return;
		}
		/* the producer's queue is full: serve delivery reports and retry */
		rd_kafka_poll(producer, 100);
		CHECK_FOR_INTERRUPTS();
	}
	t->pending++;
	t->messages++;
	if (in_flight++ == 0)
		in_flight_since = GetCurrentTimestamp();
}

/*
 * While librdkafka says every broker is down and nothing is in flight (so
 * no acknowledgement can tell), asks for metadata now and then: an answer
 * means a broker is reachable again.
 */
static void
eb_relay_probe_brokers(void)
{
	const struct rd_kafka_metadata *md;
	TimestampTz now;

	if (!brokers_down || in_flight > 0)
		return;
	now = GetCurrentTimestamp();
	if (!TimestampDifferenceExceeds(broker_probed_at, now, EB_BROKER_PROBE_MS))
		return;
	broker_probed_at = now;
	if (rd_kafka_metadata(producer, 0, NULL, &md, 200) == RD_KAFKA_RESP_ERR_NO_ERROR)
	{
		rd_kafka_metadata_destroy(md);
		brokers_down = false;
		broker_error[0] = '\0';
	}
}

/* ---------- confirming ---------- */

static void
eb_latency_add(double ms)
{
	latency_ring[latency_next] = ms;
	latency_next = (latency_next + 1) % EB_LATENCY_RING;
	if (latency_count < EB_LATENCY_RING)
		latency_count++;
}

/*
 * Confirms the slot up to the newest transaction of the fully acknowledged
 * prefix, or up to the read position when everything read is acknowledged.
 */
static void
eb_relay_confirm(LogicalDecodingContext *ctx, bool caught_up, bool force_save)
{
	XLogRecPtr	upto = InvalidXLogRecPtr;
	TimestampTz now = GetCurrentTimestamp();

	while (!dlist_is_empty(&txns))
	{
		EbRelayTxn *t = dlist_head_element(EbRelayTxn, node, &txns);

		if (!t->committed || t->pending > 0 || t->failed || t->refused > 0)
			break;
		upto = t->end_lsn;
		if (t->messages > 0)
			eb_latency_add((double) (now - t->commit_time) / 1000.0);
		dlist_delete(&t->node);
		pfree(t);
	}
	if (dlist_is_empty(&txns) && caught_up && in_flight == 0 && current_txn == NULL &&
		!session_failed)
		upto = Max(upto, ctx->reader->EndRecPtr);

	if (!XLogRecPtrIsInvalid(upto) && upto > confirmed)
	{
		LogicalConfirmReceivedLocation(upto);
		confirmed = upto;
		/* a checkpoint saves the slot from now on */
		ReplicationSlotMarkDirty();
		slot_dirty = true;
	}
	if (slot_dirty && (force_save || TimestampDifferenceExceeds(last_save, now, EB_SLOT_SAVE_MS)))
	{
		ReplicationSlotSave();
		last_save = now;
		slot_dirty = false;
	}
}

static void
eb_prepare_write(LogicalDecodingContext *ctx, XLogRecPtr lsn, TransactionId xid, bool last_write)
{
}

static void
eb_write(LogicalDecodingContext *ctx, XLogRecPtr lsn, TransactionId xid, bool last_write)
{
}

/* ---------- refused messages ---------- */

/*
 * Applies the topics' on_error policies (eventbus.relay_policy, as it is
 * now) to the messages Kafka refused for good, in order, outside decoding
 * and in a transaction of its own.  'dead_letter': the message is recorded
 * in eventbus.relay_dead_letter, durably, before its transaction can be
 * confirmed.  'stop' (the default, and always for outbox messages): the
 * session ends there; its transaction is never confirmed, relaying starts
 * again from the confirmed position after a back-off, and the status says
 * which message and why.
 */
static void
eb_relay_apply_policies(void)
{
	dlist_mutable_iter it;
	EbSpi		spi;
	EbRelayRefusal *stop_at = NULL;
	int			recorded = 0;
	char		msg[EB_RELAY_ERROR_LEN];

	if (dlist_is_empty(&refusals))
		return;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	eb_spi_begin(&spi, false);
	dlist_foreach_modify(it, &refusals)
	{
		EbRelayRefusal *r = dlist_container(EbRelayRefusal, node, it.cur);
		bool		dead_letter = false;

		if (!r->outbox)
		{
			Oid			argtypes[1] = {INT4OID};
			Datum		values[1];

			values[0] = Int32GetDatum(r->topic_id);
			eb_spi_exec("SELECT on_error FROM eventbus.relay_policy WHERE topic_id = $1",
						1, argtypes, values, NULL, true);
			if (SPI_processed == 1)
			{
				char	   *v = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);

				dead_letter = v != NULL && strcmp(v, "dead_letter") == 0;
			}
		}
		if (!dead_letter)
		{
			stop_at = r;
			break;
		}
		{
			Oid			argtypes[7] = {TEXTOID, TEXTOID, INT4OID, INT8OID, TEXTOID, LSNOID, TEXTOID};
			Datum		values[7];

			values[0] = CStringGetTextDatum(r->topic);
			values[1] = CStringGetTextDatum(r->kafka_topic);
			values[2] = Int32GetDatum(r->partition);
			values[3] = Int64GetDatum(r->position);
			values[4] = CStringGetTextDatum(r->event_id);
			values[5] = LSNGetDatum(r->lsn);
			values[6] = CStringGetTextDatum(r->error);
			eb_spi_exec("INSERT INTO eventbus.relay_dead_letter (topic, kafka_topic, partition, position, event_id, lsn, error) "
						"SELECT $1, $2, $3, $4, $5::pg_catalog.uuid, $6, $7 "
						"WHERE NOT EXISTS (SELECT FROM eventbus.relay_dead_letter WHERE event_id = $5::pg_catalog.uuid AND lsn = $6)",
						7, argtypes, values, NULL, false);
		}
		snprintf(msg, sizeof(msg),
				 "event %s of topic \"%s\" (partition %d, position " INT64_FORMAT ") was refused by Kafka topic \"%s\": %s; recorded in eventbus.relay_dead_letter",
				 r->event_id, r->topic, r->partition, r->position, r->kafka_topic, r->error);
		eb_relay_error_keyed(msg, "\001dead letter");
		r->txn->refused--;
		dlist_delete(&r->node);
		pfree(r);
		recorded++;
	}
	eb_spi_end(&spi);
	PopActiveSnapshot();
	CommitTransactionCommand();
	/* durable before the slot moves past them, whatever synchronous_commit says */
	if (recorded > 0)
		XLogFlush(XactLastCommitEnd);

	if (stop_at != NULL)
	{
		if (stop_at->outbox)
			snprintf(msg, sizeof(msg),
					 "outbox message %s (commit LSN %X/%X) was refused by Kafka topic \"%s\": %s; relaying waits at it",
					 stop_at->event_id, LSN_FORMAT_ARGS(stop_at->lsn),
					 stop_at->kafka_topic, stop_at->error);
		else
			snprintf(msg, sizeof(msg),
					 "event %s of topic \"%s\" (partition %d, position " INT64_FORMAT ", commit LSN %X/%X) was refused by Kafka topic \"%s\": %s; relaying waits at it (on_error 'stop')",
					 stop_at->event_id, stop_at->topic, stop_at->partition,
					 stop_at->position, LSN_FORMAT_ARGS(stop_at->lsn),
					 stop_at->kafka_topic, stop_at->error);
		eb_relay_error(msg);
		stop_at->txn->failed = true;
		session_failed = true;
		stopped_at_refusal = true;
	}
}

/* ---------- the session ---------- */

/*
 * Did the Kafka settings change since the session began: a setting, or
 * the contents of the properties file (same path, new contents)?
 */
static bool
eb_relay_config_changed(const char *brokers, const char *properties, const char *file)
{
	EbFileDigest digest;

	if (strcmp(brokers, eb_kafka_brokers ? eb_kafka_brokers : "") != 0 ||
		strcmp(properties, eb_kafka_properties ? eb_kafka_properties : "") != 0 ||
		strcmp(file, eb_kafka_properties_file ? eb_kafka_properties_file : "") != 0)
		return true;
	eb_properties_file_digest(&digest);
	return memcmp(&digest, &properties_file_digest, sizeof(digest)) != 0;
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
		if (shutdown_requested)
			return false;
		if (!waited)
		{
			eb_relay_set_state("waiting for synchronized_standby_slots");
			waited = true;
		}
		rd_kafka_poll(producer, 0);
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 10L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	if (waited)
		eb_relay_set_state("running");
	return true;
}

/*
 * Relays until a delivery fails, the Kafka settings change, or shutdown.
 */
static void
eb_relay_session(const char *slot)
{
	LogicalDecodingContext *ctx;
	char	   *brokers = pstrdup(eb_kafka_brokers ? eb_kafka_brokers : "");
	char	   *properties = pstrdup(eb_kafka_properties ? eb_kafka_properties : "");
	char	   *file = pstrdup(eb_kafka_properties_file ? eb_kafka_properties_file : "");

	MemoryContextReset(session_cxt);
	dlist_init(&txns);
	dlist_init(&refusals);
	stopped_at_refusal = false;
	current_txn = NULL;
	in_flight = 0;
	in_flight_since = 0;
	brokers_down = false;
	broker_error[0] = '\0';
	session_failed = false;
	if (kafka_topics != NULL)
		hash_destroy(kafka_topics);
	kafka_topics = NULL;
	if (mappings != NULL)
		hash_destroy(mappings);
	mappings = NULL;
	eb_mappings_load();
	eb_backfill_session_start();

	eb_replication_slot_acquire(slot, true);
	confirmed = MyReplicationSlot->data.confirmed_flush;
	slot_dirty = false;
	session_active = true;
	eb_relay_output_reset();
	InvalidateSystemCaches();
	ctx = CreateDecodingContext(InvalidXLogRecPtr, NIL, false,
								XL_ROUTINE(.page_read = read_local_xlog_page,
										   .segment_open = wal_segment_open,
										   .segment_close = wal_segment_close),
								eb_prepare_write, eb_write, NULL);
	XLogBeginRead(ctx->reader, MyReplicationSlot->data.restart_lsn);
	eb_relay_set_state("running");
	pgstat_report_activity(STATE_RUNNING, "relaying");

	for (;;)
	{
		XLogRecPtr	flush;
		bool		caught_up;
		int			n = 0;
		int			rc;

		CHECK_FOR_INTERRUPTS();
		if (shutdown_requested || session_failed)
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
		while (ctx->reader->EndRecPtr < flush && in_flight < eb_relay_max_in_flight &&
			   !session_failed && !shutdown_requested)
		{
			char	   *errm = NULL;
			XLogRecord *record = XLogReadRecord(ctx->reader, &errm);

			if (errm)
				elog(ERROR, "could not read WAL for the relay: %s", errm);
			if (record != NULL && !eb_relay_wait_standbys(ctx->reader->EndRecPtr))
			{
				/* shutdown: not decoded, so not confirmable either */
				session_failed = true;
				break;
			}
			if (record != NULL)
				LogicalDecodingProcessRecord(ctx, ctx->reader);
			if ((++n & 255) == 0)
			{
				rd_kafka_poll(producer, 0);
				CHECK_FOR_INTERRUPTS();
			}
		}
		rd_kafka_poll(producer, 0);
		eb_relay_probe_brokers();
		caught_up = ctx->reader->EndRecPtr >= flush;
		eb_relay_apply_policies();
		if (!session_failed)
		{
			EbBackfillSink sink = {.read_lsn = ctx->reader->EndRecPtr};

			(void) eb_backfill_fill(&sink, eb_relay_max_in_flight - (int) in_flight);
		}
		eb_mappings_persist();
		eb_relay_confirm(ctx, caught_up, false);
		eb_relay_publish_stats(false);

		if (!caught_up && in_flight < eb_relay_max_in_flight)
			continue;

		/*
		 * Sleep until a commit sets the latch or librdkafka queues a
		 * delivery report (kafka_event_fd), whichever comes first.
		 */
		rc = eb_relay_wait(in_flight >= eb_relay_max_in_flight,
						   in_flight > 0 ? 100L : 1000L);
		ResetLatch(MyLatch);
		if (rc & WL_SOCKET_READABLE)
			eb_drain_event_fd();
	}

	/* Let what is in flight arrive (briefly), confirm it, and leave. */
	if (!session_failed)
	{
		TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), 5000);

		while (in_flight > 0 && GetCurrentTimestamp() < deadline && !session_failed)
			rd_kafka_poll(producer, 100);
		eb_relay_apply_policies();
		eb_mappings_persist();
		if (!session_failed)
			eb_relay_confirm(ctx, true, true);
		else if (slot_dirty)
			eb_relay_confirm(ctx, false, true);
	}
	else if (slot_dirty)
		eb_relay_confirm(ctx, false, true);

	eb_producer_destroy();
	session_active = false;
	FreeDecodingContext(ctx);
	InvalidateSystemCaches();
	ReplicationSlotRelease();
	eb_relay_publish_stats(true);
	MemoryContextReset(session_cxt);
	dlist_init(&txns);
	dlist_init(&refusals);
	current_txn = NULL;
	in_flight = 0;
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

	shutdown_requested = true;
	SetLatch(MyLatch);
	errno = save_errno;
}

static void
eb_relay_exit(int code, Datum arg)
{
	eb_producer_destroy();
	if (my_relay == NULL)
		return;
	SpinLockAcquire(&my_relay->mutex);
	my_relay->pid = 0;
	my_relay->latch = NULL;
	my_relay->in_flight = 0;
	strlcpy(my_relay->state, code == 0 ? "stopped" : "restarting after an error",
			EB_RELAY_STATE_LEN);
	SpinLockRelease(&my_relay->mutex);
}

/* Waits for a reload or shutdown, at most timeout_ms. */
static void
eb_relay_pause(long timeout_ms)
{
	(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					 timeout_ms, PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
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
	my_relay = eb_relay_state(dboid);
	if (my_relay == NULL)
		elog(ERROR, "pg_eventbus relay started in database %u without its shared entry", dboid);
	before_shmem_exit(eb_relay_exit, (Datum) 0);
	SpinLockAcquire(&my_relay->mutex);
	my_relay->pid = MyProcPid;
	my_relay->latch = MyLatch;
	my_relay->started_at = GetCurrentTimestamp();
	/* the counters go on from the previous worker's (since server start) */
	stat_events = my_relay->events_relayed;
	stat_bytes = my_relay->bytes_relayed;
	strlcpy(my_relay->slot_name, slot, NAMEDATALEN);
	strlcpy(my_relay->state, "starting", EB_RELAY_STATE_LEN);
	SpinLockRelease(&my_relay->mutex);

	eb_relay_allow_plugin();
	CurrentResourceOwner = ResourceOwnerCreate(NULL, "pg_eventbus relay");
	session_cxt = AllocSetContextCreate(TopMemoryContext, "pg_eventbus relay session",
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

	while (!shutdown_requested)
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
		producer = eb_producer_create(why, sizeof(why));
		if (producer == NULL)
		{
			eb_relay_set_state("configuration error");
			eb_relay_error(why);
			/* nothing changes until the settings do */
			while (!shutdown_requested && !ConfigReloadPending)
				eb_relay_pause(60000L);
			continue;
		}

		eb_relay_session(slot);

		if (session_failed && !shutdown_requested)
		{
			/* back off before relaying again, up to 30 s */
			eb_relay_set_state(stopped_at_refusal ? "stopped at a refused message" : "retrying");
			eb_relay_pause(backoff_ms);
			backoff_ms = Min(backoff_ms * 2, 30000L);
		}
		else
			backoff_ms = 1000;
	}
	eb_relay_set_state("stopped");
	proc_exit(0);
}
