/*-------------------------------------------------------------------------
 *
 * relay_kafka.c
 *	  The relay's Kafka client: the producer's configuration (settings and
 *	  the properties file), its error and log callbacks, sending one
 *	  message, and Kafka transactions with their progress records.  What
 *	  the brokers say of the Kafka topics, and the partition mappings, are
 *	  in relay_topics.c.
 *
 * The producer is idempotent and lives for one session.  Messages never
 * time out in the producer (message.timeout.ms = 0 unless configured), so
 * a broker outage stalls the relay instead of failing it.  librdkafka runs
 * its own threads, but every callback used here (delivery reports, errors,
 * logs via the log queue) is served by rd_kafka_poll() in the worker's main
 * thread; librdkafka writes a byte to a pipe (eb_kafka_event_fd) when it has
 * something to serve.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "access/timeline.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "utils/pg_lsn.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/interrupt.h"
#include "storage/fd.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "settings.h"
#include "privileged.h"
#include "relay_int.h"
#include "shmem.h"

char	   *eb_kafka_brokers = NULL;
char	   *eb_kafka_properties = NULL;
char	   *eb_kafka_properties_file = NULL;
int			eb_relay_max_in_flight = 100000;
int			eb_relay_delivery = EB_RELAY_DELIVERY_DEFAULT;
char	   *eb_relay_transactional_id = NULL;
char	   *eb_relay_progress_topic = NULL;
int			eb_relay_commit_interval = 100;

rd_kafka_t *eb_producer = NULL;	/* for one session */

/* exactly-once: the session's settings, fixed when its producer was created */
bool		eb_exactly_once = false;
static char txn_id[256];
static char progress_topic[EB_KAFKA_TOPIC_MAX + 1];
static char session_tag[32];	/* names the session in progress records */

/* exactly-once: where Kafka is, and the Kafka transaction */
XLogRecPtr	eb_progress_lsn = InvalidXLogRecPtr;
char	   *eb_progress_record = NULL;	/* the text of the record it came from */
uint64		eb_kafka_txn_seq = 0;
uint64		eb_kafka_txn_committed = 0;
static bool txn_open = false;
static TimestampTz txn_began_at = 0;
static bool txn_caught_up = false;	/* WAL all read since it began */
static TimestampTz txn_due_at = 0;	/* when reading paused for its commit */
static long last_pause_ms = 0;	/* reading paused that long for the last one */
static char txn_name[64];		/* <session tag>.<eb_kafka_txn_seq> */

/*
 * Exactly-once: the offsets the open Kafka transaction's messages got, per
 * topic and partition (from the delivery reports), for its progress record.
 */
typedef struct EbTxnOffsetsKey
{
	char		topic[EB_KAFKA_TOPIC_MAX + 1];
	int32		partition;
} EbTxnOffsetsKey;

typedef struct EbTxnOffsets
{
	EbTxnOffsetsKey key;
	int64		first;
	int64		last;
} EbTxnOffsets;

static HTAB *txn_offsets = NULL;
/* the entry of the last delivery report: consecutive reports mostly share it */
static EbTxnOffsets *txn_offsets_last = NULL;

bool		eb_brokers_down = false;
char		eb_broker_error[EB_RELAY_ERROR_LEN];

/* the properties file's digest when the producer was created */
typedef struct EbFileDigest
{
	uint64		hash;
	uint64		size;
	bool		exists;
} EbFileDigest;

static EbFileDigest properties_file_digest;
static TimestampTz broker_probed_at = 0;

/* written by librdkafka when the main queue gets events; read end polled */
static int	kafka_event_fd[2] = {-1, -1};

int
eb_kafka_event_fd(void)
{
	return kafka_event_fd[0];
}

/* A new session forgets what librdkafka said of the brokers. */
void
eb_kafka_session_reset(void)
{
	eb_brokers_down = false;
	eb_broker_error[0] = '\0';
}

/* ---------- errors (served by rd_kafka_poll) ---------- */

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

/*
 * Errors that refuse one message for good: sending it again cannot help.
 * Other delivery errors (timeouts, leader changes, a broker gone) are
 * retried: relaying starts again from the confirmed position, with
 * back-off.
 */
bool
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
		eb_session_failed = true;
	if (!eb_kafka_error_is_connection(err))
	{
		snprintf(msg, sizeof(msg), "Kafka: %s", text);
		eb_relay_error(msg);
		return;
	}
	if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
	{
		eb_brokers_down = true;
		if (eb_broker_error[0] != '\0')
			snprintf(msg, sizeof(msg), "Kafka brokers unreachable (%s): %s",
					 text, eb_broker_error);
		else
			snprintf(msg, sizeof(msg), "Kafka brokers unreachable (%s; bootstrap servers %s)",
					 text, eb_kafka_brokers ? eb_kafka_brokers : "");
	}
	else
	{
		strlcpy(eb_broker_error, text, sizeof(eb_broker_error));
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

/*
 * Creates the session's producer from the settings; on_delivery receives
 * each message's delivery report (inside rd_kafka_poll()).  NULL, with the
 * reason in err, if the settings cannot make one.
 */
rd_kafka_t *
eb_producer_create(EbKafkaDeliveryFn on_delivery, char *err, size_t errlen)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	char		errstr[512];
	char		buf[32];
	char		maxbytes[32];
	rd_kafka_t *rk;
	rd_kafka_queue_t *mainq;

	/* before the file is read: a change after this is seen at the next reload */
	eb_properties_file_digest(&properties_file_digest);
	eb_exactly_once = eb_relay_delivery == EB_RELAY_EXACTLY_ONCE;
	eb_relay_txn_id(txn_id, sizeof(txn_id));
	strlcpy(progress_topic, eb_relay_progress_topic ? eb_relay_progress_topic : "",
			sizeof(progress_topic));
	if (eb_exactly_once && !eb_kafka_topic_name_valid(progress_topic))
	{
		snprintf(err, errlen, "eventbus.relay_progress_topic \"%s\" is not a valid Kafka topic name",
				 progress_topic);
		rd_kafka_conf_destroy(conf);
		return NULL;
	}
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
		(eb_exactly_once &&
		 (!eb_conf_set(conf, "transactional.id", txn_id, err, errlen) ||
		  !eb_conf_set(conf, "transaction.timeout.ms", "60000", err, errlen) ||
		  !eb_conf_set(conf, "message.timeout.ms", "55000", err, errlen))) ||
		!eb_conf_set(conf, "linger.ms", "1", err, errlen) ||
		!eb_conf_set(conf, "queue.buffering.max.messages", buf, err, errlen) ||
		!eb_conf_set(conf, "log.queue", "true", err, errlen) ||
		!eb_conf_apply_properties(conf, err, errlen) ||
		!eb_conf_apply_file(conf, err, errlen))
	{
		rd_kafka_conf_destroy(conf);
		return NULL;
	}
	rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
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

/* Empties the producer's event pipe; the reports are served by rd_kafka_poll. */
void
eb_drain_event_fd(void)
{
	char		buf[64];

	while (read(kafka_event_fd[0], buf, sizeof(buf)) > 0)
		;
}

/*
 * The producer's handle of the Kafka topic of the last message sent, or
 * NULL: producing by topic name instead takes the client's write lock and
 * looks the topic up by name for every message.
 */
static rd_kafka_topic_t *send_rkt = NULL;

static rd_kafka_topic_t *
eb_send_topic(const char *kafka_topic)
{
	if (send_rkt != NULL && strcmp(rd_kafka_topic_name(send_rkt), kafka_topic) == 0)
		return send_rkt;
	if (send_rkt != NULL)
		rd_kafka_topic_destroy(send_rkt);
	/* NULL (a name librdkafka refuses): the message goes by name, and fails */
	send_rkt = rd_kafka_topic_new(eb_producer, kafka_topic, NULL);
	return send_rkt;
}

/*
 * Destroys the producer; nothing can be called back afterwards.  The topic
 * handles held for the session go first (eb_kafka_topics_release).
 */
void
eb_producer_destroy(void)
{
	if (send_rkt != NULL)
		rd_kafka_topic_destroy(send_rkt);
	send_rkt = NULL;
	if (eb_producer == NULL)
		return;
	rd_kafka_purge(eb_producer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT |
				   RD_KAFKA_PURGE_F_NON_BLOCKING);
	rd_kafka_destroy(eb_producer);
	eb_producer = NULL;
}

/* Exactly-once: the session's progress topic; NULL otherwise. */
const char *
eb_kafka_progress_topic(void)
{
	return eb_exactly_once ? progress_topic : NULL;
}

/*
 * Did the Kafka settings change since the session began: a setting, or
 * the contents of the properties file (same path, new contents)?
 */
bool
eb_relay_config_changed(const char *brokers, const char *properties, const char *file)
{
	EbFileDigest digest;

	char		id[sizeof(txn_id)];

	eb_relay_txn_id(id, sizeof(id));
	if (eb_exactly_once != (eb_relay_delivery == EB_RELAY_EXACTLY_ONCE) ||
		strcmp(id, txn_id) != 0 ||
		strcmp(progress_topic, eb_relay_progress_topic ? eb_relay_progress_topic : "") != 0)
		return true;
	if (strcmp(brokers, eb_kafka_brokers ? eb_kafka_brokers : "") != 0 ||
		strcmp(properties, eb_kafka_properties ? eb_kafka_properties : "") != 0 ||
		strcmp(file, eb_kafka_properties_file ? eb_kafka_properties_file : "") != 0)
		return true;
	eb_properties_file_digest(&digest);
	return memcmp(&digest, &properties_file_digest, sizeof(digest)) != 0;
}

/* ---------- sending ---------- */

/*
 * Hands one message to the producer: through the topic's handle when
 * there is one (no lookup by name, no client-wide lock), else by name.
 * On failure the headers stay the caller's.
 */
static rd_kafka_resp_err_t
eb_produce(rd_kafka_topic_t *rkt, EbRelayMessage *m, int32 partition,
		   rd_kafka_headers_t *hdrs, void *opaque)
{
	rd_kafka_vu_t vus[] = {
		{.vtype = RD_KAFKA_VTYPE_RKT, .u.rkt = rkt},
		{.vtype = RD_KAFKA_VTYPE_PARTITION, .u.i32 = partition},
		{.vtype = RD_KAFKA_VTYPE_MSGFLAGS, .u.i = RD_KAFKA_MSG_F_COPY},
		{.vtype = RD_KAFKA_VTYPE_KEY,
		.u.mem = {.ptr = (void *) m->key, .size = m->key ? m->keylen : 0}},
		{.vtype = RD_KAFKA_VTYPE_VALUE,
		.u.mem = {.ptr = (void *) m->value, .size = m->valuelen}},
		{.vtype = RD_KAFKA_VTYPE_TIMESTAMP, .u.i64 = m->timestamp_ms},
		{.vtype = RD_KAFKA_VTYPE_HEADERS, .u.headers = hdrs},
		{.vtype = RD_KAFKA_VTYPE_OPAQUE, .u.ptr = opaque},
	};
	rd_kafka_error_t *error;
	rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;

	if (rkt == NULL)
	{
		vus[0].vtype = RD_KAFKA_VTYPE_TOPIC;
		vus[0].u.cstr = m->kafka_topic;
	}
	error = rd_kafka_produceva(eb_producer, vus, lengthof(vus));
	if (error != NULL)
	{
		err = rd_kafka_error_code(error);
		rd_kafka_error_destroy(error);
	}
	return err;
}

/*
 * Hands a message to the producer, with its headers, to the given
 * partition (RD_KAFKA_PARTITION_UA: the key decides); opaque comes back in
 * its delivery report.  Never waits: a full queue is the caller's to serve
 * (RD_KAFKA_RESP_ERR__QUEUE_FULL).
 */
rd_kafka_resp_err_t
eb_kafka_produce(EbRelayMessage *m, int32 partition, void *opaque)
{
	rd_kafka_topic_t *rkt = eb_send_topic(m->kafka_topic);
	rd_kafka_headers_t *hdrs = rd_kafka_headers_new(m->nheaders);
	rd_kafka_resp_err_t err;
	int			i;

	for (i = 0; i < m->nheaders; i++)
		rd_kafka_header_add(hdrs, m->header_names[i], -1,
							m->header_values[i],
							m->header_values[i] ? -1 : 0);
	err = eb_produce(rkt, m, partition, hdrs, opaque);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
		rd_kafka_headers_destroy(hdrs);
	return err;
}

/*
 * While librdkafka says every broker is down and nothing is in flight (so
 * no acknowledgement can tell), asks for metadata now and then: an answer
 * means a broker is reachable again.
 */
void
eb_relay_probe_brokers(bool in_flight)
{
	const struct rd_kafka_metadata *md;
	TimestampTz now;

	if (!eb_brokers_down || in_flight)
		return;
	now = GetCurrentTimestamp();
	if (!TimestampDifferenceExceeds(broker_probed_at, now, EB_BROKER_PROBE_MS))
		return;
	broker_probed_at = now;
	if (rd_kafka_metadata(eb_producer, 0, NULL, &md, 200) == RD_KAFKA_RESP_ERR_NO_ERROR)
	{
		rd_kafka_metadata_destroy(md);
		eb_brokers_down = false;
		eb_broker_error[0] = '\0';
	}
}

/* ---------- exactly-once: transactions and the progress topic ---------- */

static void eb_kafka_txn_offsets_reset(void);

/*
 * The transactional.id of this database's relay: eventbus.relay_transactional_id
 * followed by -<database OID>, or pg_eventbus-<system identifier>-<database
 * OID> when that is empty.  Stable across restarts, so that a new producer
 * fences the older ones.
 */
void
eb_relay_txn_id(char *buf, size_t len)
{
	if (eb_relay_transactional_id != NULL && eb_relay_transactional_id[0] != '\0')
		snprintf(buf, len, "%s-%u", eb_relay_transactional_id, MyDatabaseId);
	else
		snprintf(buf, len, "pg_eventbus-" UINT64_FORMAT "-%u",
				 GetSystemIdentifier(), MyDatabaseId);
}

bool
eb_kafka_txn_open(void)
{
	return txn_open;
}

/*
 * Has the open Kafka transaction been open long enough?  That is
 * eventbus.relay_commit_interval once the relay has read all WAL since the
 * transaction began.  While it drains a backlog (it has not caught up
 * since), committing pauses reading WAL (the last messages' acknowledgements,
 * then the commit): then the transaction stays open ten times as long as
 * the last such pause took, at least relay_commit_interval and at most ten
 * times it, so that commits cost the drain about a tenth of its time.  Not
 * while the brokers are unreachable: then it takes more until
 * relay_max_in_flight messages wait, as in at-least-once mode.
 */
bool
eb_kafka_txn_due(void)
{
	long		interval = eb_relay_commit_interval;

	if (!txn_open || eb_brokers_down)
		return false;
	if (!txn_caught_up)
		interval = Min(Max(interval, last_pause_ms * 10), (long) eb_relay_commit_interval * 10);
	if (!TimestampDifferenceExceeds(txn_began_at, GetCurrentTimestamp(), (int) interval))
		return false;
	if (txn_due_at == 0)
		txn_due_at = GetCurrentTimestamp();
	return true;
}

/* The relay read all WAL there is (relay_worker.c); see eb_kafka_txn_due. */
void
eb_kafka_txn_caught_up(void)
{
	txn_caught_up = true;
}

/* The message of a failed transactional call; it ends the session. */
static void
eb_kafka_txn_failed(const char *what, rd_kafka_error_t *error)
{
	eb_relay_error(psprintf("%s (transactional.id \"%s\"): %s; relaying again from the last confirmed position",
							what, txn_id, rd_kafka_error_string(error)));
	eb_session_failed = true;
}

/* Begins a Kafka transaction unless one is open; false if the session failed. */
bool
eb_kafka_txn_begin(void)
{
	rd_kafka_error_t *error;

	if (txn_open)
		return true;
	error = rd_kafka_begin_transaction(eb_producer);
	if (error != NULL)
	{
		eb_kafka_txn_failed("could not begin a Kafka transaction", error);
		rd_kafka_error_destroy(error);
		return false;
	}
	txn_open = true;
	txn_began_at = GetCurrentTimestamp();
	txn_caught_up = false;
	txn_due_at = 0;
	eb_kafka_txn_seq++;
	snprintf(txn_name, sizeof(txn_name), "%s." UINT64_FORMAT,
			 session_tag, eb_kafka_txn_seq);
	eb_kafka_txn_offsets_reset();
	return true;
}

/* Forgets the offsets of the previous Kafka transaction. */
static void
eb_kafka_txn_offsets_reset(void)
{
	HASH_SEQ_STATUS seq;
	EbTxnOffsets *o;

	if (txn_offsets == NULL)
	{
		HASHCTL		ctl;

		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = sizeof(EbTxnOffsetsKey);
		ctl.entrysize = sizeof(EbTxnOffsets);
		ctl.hcxt = TopMemoryContext;
		txn_offsets = hash_create("pg_eventbus relay transaction offsets", 64, &ctl,
								  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
		return;
	}
	txn_offsets_last = NULL;
	hash_seq_init(&seq, txn_offsets);
	while ((o = hash_seq_search(&seq)) != NULL)
		hash_search(txn_offsets, &o->key, HASH_REMOVE, NULL);
}

/*
 * Exactly-once: notes the offset a message of the open Kafka transaction
 * got (called from delivery reports).
 */
void
eb_kafka_txn_note_offset(const char *topic, int32 partition, int64 offset)
{
	EbTxnOffsetsKey key;
	EbTxnOffsets *o;
	bool		found;

	if (!txn_open || txn_offsets == NULL || offset < 0)
		return;
	o = txn_offsets_last;
	if (o != NULL && o->key.partition == partition && strcmp(o->key.topic, topic) == 0)
		found = true;
	else
	{
		/* a hash of the whole key (the longest topic name) per lookup */
		memset(&key, 0, sizeof(key));
		strlcpy(key.topic, topic, sizeof(key.topic));
		key.partition = partition;
		o = txn_offsets_last = hash_search(txn_offsets, &key, HASH_ENTER, &found);
	}
	if (!found || offset < o->first)
		o->first = offset;
	if (!found || offset > o->last)
		o->last = offset;
}

/*
 * Queues the open Kafka transaction's progress record, saying that Kafka
 * has every PostgreSQL transaction up to commit_lsn (the last one decoded:
 * this is only called between transactions) once the transaction commits.
 * The caller waited until every message of the transaction was
 * acknowledged (relay_ack.c): so a progress record in the log always comes
 * after the messages it speaks for, even for a consumer that does not
 * filter aborted transactions.  False if it could not be queued: the
 * transaction is aborted and the session ends.
 */
bool
eb_kafka_txn_progress(XLogRecPtr commit_lsn, XLogRecPtr end_lsn, const char *note)
{
	StringInfoData value;
	HASH_SEQ_STATUS seq;
	EbTxnOffsets *o;
	bool		first = true;
	rd_kafka_resp_err_t err;

	Assert(txn_open);
	/*
	 * The record: how far Kafka got, which transaction this is, and where
	 * its messages are ([topic, partition, first offset, last offset]; Kafka
	 * topic names need no JSON escaping).
	 */
	initStringInfo(&value);
	appendStringInfo(&value,
					 "{\"commit_lsn\": \"%X/%X\", \"end_lsn\": \"%X/%X\", \"relay_txn\": \"%s\", \"system_identifier\": \"" UINT64_FORMAT "\", \"database_oid\": %u, \"timeline\": %u, \"offsets\": [",
					 LSN_FORMAT_ARGS(commit_lsn), LSN_FORMAT_ARGS(end_lsn), txn_name,
					 GetSystemIdentifier(), MyDatabaseId, GetWALInsertionTimeLine());
	hash_seq_init(&seq, txn_offsets);
	while ((o = hash_seq_search(&seq)) != NULL)
	{
		appendStringInfo(&value, "%s[\"%s\", %d, " INT64_FORMAT ", " INT64_FORMAT "]",
						 first ? "" : ", ", o->key.topic,
						 o->key.partition, o->first, o->last);
		first = false;
	}
	appendStringInfo(&value, "]%s}", note);
	for (;;)
	{
		err = rd_kafka_producev(eb_producer,
								RD_KAFKA_V_TOPIC(progress_topic),
								RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
								RD_KAFKA_V_KEY(txn_id, strlen(txn_id)),
								RD_KAFKA_V_VALUE(value.data, value.len),
								RD_KAFKA_V_OPAQUE(NULL),
								RD_KAFKA_V_END);
		if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL || eb_shutdown_requested)
			break;
		rd_kafka_poll(eb_producer, 100);
	}
	pfree(value.data);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
	{
		eb_relay_error(psprintf("could not queue the progress record for Kafka topic \"%s\": %s; relaying again from the last confirmed position",
								progress_topic, rd_kafka_err2str(err)));
		eb_session_failed = true;
		eb_kafka_txn_abort();
		return false;
	}
	return true;
}

/*
 * One attempt to commit the open Kafka transaction, whose progress record
 * is queued (eb_kafka_txn_progress), waiting up to a second for the
 * brokers.  EB_KAFKA_COMMIT_RETRY: they did not answer, and the caller may
 * try again (the session is not failed, no shutdown was requested, the
 * deadline, if not 0, has not passed).  EB_KAFKA_COMMITTED: Kafka has
 * every PostgreSQL transaction up to commit_lsn.  EB_KAFKA_COMMIT_FAILED:
 * the transaction is aborted (or left for the next producer to abort), the
 * session ends and relaying starts again from the slot.
 */
EbKafkaCommit
eb_kafka_txn_commit_try(XLogRecPtr commit_lsn, TimestampTz deadline)
{
	rd_kafka_error_t *error;

	Assert(txn_open);
	error = rd_kafka_commit_transaction(eb_producer, 1000);
	if (error != NULL)
	{
		if (rd_kafka_error_is_retriable(error) && !eb_session_failed &&
			!eb_shutdown_requested &&
			(deadline == 0 || GetCurrentTimestamp() < deadline))
		{
			/* the brokers do not answer (yet) */
			rd_kafka_error_destroy(error);
			rd_kafka_poll(eb_producer, 0);
			return EB_KAFKA_COMMIT_RETRY;
		}
		eb_kafka_txn_failed("could not commit a Kafka transaction", error);
		rd_kafka_error_destroy(error);
		eb_kafka_txn_abort();
		return EB_KAFKA_COMMIT_FAILED;
	}
	if (txn_due_at != 0)
	{
		long		secs;
		int			usecs;

		TimestampDifference(txn_due_at, GetCurrentTimestamp(), &secs, &usecs);
		last_pause_ms = secs * 1000 + usecs / 1000;
	}
	txn_open = false;
	eb_kafka_txn_committed = eb_kafka_txn_seq;
	eb_progress_lsn = commit_lsn;
	return EB_KAFKA_COMMITTED;
}

/* The name of the Kafka transaction begun last (its records' relay_txn). */
const char *
eb_kafka_txn_name(void)
{
	return txn_name;
}

/*
 * Aborts the open Kafka transaction, if any, briefly: a producer that
 * cannot abort is destroyed anyway, and the next one's
 * rd_kafka_init_transactions() aborts what is left open.  What waited for
 * its commit is the caller's to drop (eb_ack_kafka_abort).
 */
void
eb_kafka_txn_abort(void)
{
	rd_kafka_error_t *error;

	if (!txn_open)
		return;
	txn_open = false;
	error = rd_kafka_abort_transaction(eb_producer, 2000);
	if (error != NULL)
		rd_kafka_error_destroy(error);
}

/* offsets at the end of each partition of the progress topic read first */
#define EB_PROGRESS_TAIL 1000

/*
 * Parses "commit_lsn": "X/Y" and "timeline": N out of a progress record;
 * false if commit_lsn is absent.  A record without a timeline (written
 * before records named theirs) is taken for one of the current timeline:
 * *tli = 0.
 */
static bool
eb_progress_parse(const char *value, size_t len, XLogRecPtr *lsn, TimeLineID *tli)
{
	char		buf[512];
	const char *p;
	uint32		hi,
				lo;
	unsigned int t;

	/* commit_lsn and timeline come first; the offsets that follow can be long */
	len = Min(len, sizeof(buf) - 1);
	memcpy(buf, value, len);
	buf[len] = '\0';
	p = strstr(buf, "\"commit_lsn\": \"");
	if (p == NULL || sscanf(p + 15, "%X/%X", &hi, &lo) != 2)
		return false;
	*lsn = ((uint64) hi << 32) | lo;
	p = strstr(buf, "\"timeline\": ");
	*tli = (p != NULL && sscanf(p + 12, "%u", &t) == 1) ? (TimeLineID) t : 0;
	return true;
}

/*
 * Whether a progress record speaks for this server's WAL, and how far
 * (*lsn, lowered where this server's history left the record's timeline).
 * A record of an earlier timeline of this server's history (written before a
 * promotion or a point-in-time recovery that ended it) speaks for this
 * server's transactions only up to where this server's history left that
 * timeline: after that point, the same LSNs are other transactions, which
 * Kafka does not have (a standby promoted behind its primary, a restore to
 * an earlier point).  A record of a timeline not in this history (a
 * sibling branch, a server restored to before it) says nothing about this
 * server's transactions: false.  A record may say 0/0 (a backfill batch
 * committed before anything was decoded).  *history is read once, when
 * first needed.
 */
static bool
eb_progress_in_history(XLogRecPtr *lsn, TimeLineID tli, TimeLineID current,
					   List **history, XLogRecPtr *left_at_out)
{
	XLogRecPtr	left_at;

	*left_at_out = InvalidXLogRecPtr;
	if (tli == 0 || current == 0 || tli == current)
		return true;
	if (*history == NIL)
		*history = readTimeLineHistory(current);
	if (tli > current || !tliInHistory(tli, *history))
		return false;
	left_at = tliSwitchPoint(tli, *history, NULL);
	*left_at_out = left_at;
	if (left_at == InvalidXLogRecPtr)
		return false;
	/* a commit record at left_at is of a later timeline already */
	*lsn = Min(*lsn, left_at - 1);
	return true;
}

/*
 * Reads how far Kafka got: the progress record of this relay's
 * transactional id with the highest commit LSN, read by a read_committed
 * consumer from every partition of the progress topic.  No topic or no
 * record: InvalidXLogRecPtr (nothing is skipped).  False with *err set if
 * the topic cannot be read; false with *err empty at shutdown.
 */
static bool
eb_kafka_progress_read(char *err, size_t errlen)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_t *c;
	rd_kafka_topic_t *rkt;
	const struct rd_kafka_metadata *md = NULL;
	rd_kafka_topic_partition_list_t *parts;
	rd_kafka_queue_t *q;
	char		errstr[512];
	int			partitions = 0;
	int			done = 0;
	bool	   *at_end = NULL;
	bool		ok = true;
	XLogRecPtr	found = InvalidXLogRecPtr;
	size_t		idlen = strlen(txn_id);
	TimestampTz deadline;
	char		group[sizeof(txn_id) + 16];
	rd_kafka_resp_err_t aerr;
	bool		whole = false;	/* every partition from its beginning */
	bool		cut = false;	/* some partition read from its tail only */
	/* the relay runs on a primary only; 0: no timeline is checked */
	TimeLineID	current_tli = RecoveryInProgress() ? 0 : GetWALInsertionTimeLine();
	List	   *history = NIL;	/* this server's timelines, when needed */
	TimeLineID	found_tli = 0;	/* found is of this earlier timeline */
	XLogRecPtr	found_left_at = InvalidXLogRecPtr;	/* ... left here */
	XLogRecPtr	left_at;

	err[0] = '\0';
	eb_progress_lsn = InvalidXLogRecPtr;
	if (eb_progress_record != NULL)
		pfree(eb_progress_record);
	eb_progress_record = NULL;

	/*
	 * librdkafka's consumer wants a group id even for assigned partitions;
	 * the group is never joined and no offset is committed.
	 */
	snprintf(group, sizeof(group), "%s-progress", txn_id);
	if (!eb_conf_set(conf, "bootstrap.servers", eb_kafka_brokers, err, errlen) ||
		!eb_conf_set(conf, "client.id", "pg_eventbus", err, errlen) ||
		!eb_conf_set(conf, "log.queue", "true", err, errlen) ||
		!eb_conf_apply_properties(conf, err, errlen) ||
		!eb_conf_apply_file(conf, err, errlen) ||
		!eb_conf_set(conf, "isolation.level", "read_committed", err, errlen) ||
		!eb_conf_set(conf, "enable.partition.eof", "true", err, errlen) ||
		/* a tail that starts before the first retained offset reads it all */
		!eb_conf_set(conf, "auto.offset.reset", "earliest", err, errlen) ||
		/* the end of a partition is found by a fetch that returns nothing */
		!eb_conf_set(conf, "fetch.wait.max.ms", "10", err, errlen) ||
		/* and a fetch that failed is tried again soon, not after 500 ms */
		!eb_conf_set(conf, "fetch.error.backoff.ms", "10", err, errlen) ||
		!eb_conf_set(conf, "enable.auto.commit", "false", err, errlen) ||
		!eb_conf_set(conf, "enable.auto.offset.store", "false", err, errlen) ||
		!eb_conf_set(conf, "group.id", group, err, errlen))
	{
		rd_kafka_conf_destroy(conf);
		return false;
	}
	rd_kafka_conf_set_error_cb(conf, eb_error_cb);
	rd_kafka_conf_set_log_cb(conf, eb_log_cb);
	c = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
	if (c == NULL)
	{
		rd_kafka_conf_destroy(conf);
		snprintf(err, errlen, "could not create the Kafka consumer of the progress topic: %s", errstr);
		return false;
	}
	q = rd_kafka_queue_get_main(c);
	rd_kafka_set_log_queue(c, q);
	rd_kafka_queue_destroy(q);

	/* the progress topic's partitions; wait while the brokers do not answer */
	rkt = rd_kafka_topic_new(c, progress_topic, NULL);
	for (;;)
	{
		if (rd_kafka_metadata(c, 0, rkt, &md, 2000) == RD_KAFKA_RESP_ERR_NO_ERROR)
			break;
		md = NULL;
		rd_kafka_poll(c, 0);
		eb_relay_set_state(eb_brokers_down ? "broker unreachable" :
						   "starting Kafka transactions");
		CHECK_FOR_INTERRUPTS();
		if (eb_shutdown_requested || ConfigReloadPending)
		{
			ok = false;
			goto out;
		}
	}
	if (md->topic_cnt == 1 && md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR)
		partitions = md->topics[0].partition_cnt;
	else if (md->topic_cnt == 1 &&
			 md->topics[0].err != RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART &&
			 md->topics[0].err != RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE)
	{
		snprintf(err, errlen, "could not read the progress topic \"%s\": %s",
				 progress_topic, rd_kafka_err2str(md->topics[0].err));
		ok = false;
		goto out;
	}
	if (partitions <= 0)
		goto out;				/* no topic yet: nothing relayed with it */

	/*
	 * The relay's last record is near the end of its partition unless many
	 * other relays share the topic: read the last EB_PROGRESS_TAIL offsets
	 * of every partition first, everything only if that finds none.
	 */
again:
	parts = rd_kafka_topic_partition_list_new(partitions);
	for (int p = 0; p < partitions; p++)
		rd_kafka_topic_partition_list_add(parts, progress_topic, p)->offset =
			whole ? RD_KAFKA_OFFSET_BEGINNING : RD_KAFKA_OFFSET_TAIL(EB_PROGRESS_TAIL);
	aerr = rd_kafka_assign(c, parts);
	rd_kafka_topic_partition_list_destroy(parts);
	if (aerr != RD_KAFKA_RESP_ERR_NO_ERROR)
	{
		snprintf(err, errlen, "could not read the progress topic \"%s\": %s",
				 progress_topic, rd_kafka_err2str(aerr));
		ok = false;
		goto out;
	}
	if (at_end == NULL)
		at_end = palloc0(sizeof(bool) * partitions);

	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), 60000);
	while (done < partitions)
	{
		rd_kafka_message_t *msg = rd_kafka_consumer_poll(c, 100);

		CHECK_FOR_INTERRUPTS();
		if (eb_shutdown_requested)
		{
			ok = false;
			if (msg != NULL)
				rd_kafka_message_destroy(msg);
			goto out;
		}
		if (GetCurrentTimestamp() > deadline)
		{
			snprintf(err, errlen, "could not read the progress topic \"%s\" to its end within 60 s",
					 progress_topic);
			ok = false;
			if (msg != NULL)
				rd_kafka_message_destroy(msg);
			goto out;
		}
		if (msg == NULL)
			continue;
		if (msg->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
		{
			if (msg->partition >= 0 && msg->partition < partitions &&
				!at_end[msg->partition])
			{
				at_end[msg->partition] = true;
				done++;
				/* the end offset: the tail may have left records out */
				if (!whole && msg->offset > EB_PROGRESS_TAIL)
					cut = true;
			}
		}
		else if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR)
		{
			XLogRecPtr	lsn;
			TimeLineID	tli;

			if (msg->key_len == idlen && memcmp(msg->key, txn_id, idlen) == 0 &&
				eb_progress_parse(msg->payload, msg->len, &lsn, &tli) &&
				eb_progress_in_history(&lsn, tli, current_tli, &history, &left_at) &&
				lsn >= found)
			{
				found_tli = XLogRecPtrIsInvalid(left_at) ? 0 : tli;
				found_left_at = left_at;
				/* the last of equal LSNs: a backfill batch's commit adds none */
				found = lsn;
				if (eb_progress_record != NULL)
					pfree(eb_progress_record);
				eb_progress_record = MemoryContextAllocZero(TopMemoryContext, msg->len + 1);
				memcpy(eb_progress_record, msg->payload, msg->len);
			}
		}
		else if (eb_kafka_error_is_permanent(msg->err))
		{
			snprintf(err, errlen, "could not read the progress topic \"%s\": %s",
					 progress_topic, rd_kafka_message_errstr(msg));
			ok = false;
			rd_kafka_message_destroy(msg);
			goto out;
		}
		rd_kafka_message_destroy(msg);
	}
	if (eb_progress_record == NULL && cut && !whole)
	{
		/* none in the tails: read every partition from its beginning */
		whole = true;
		cut = false;
		done = 0;
		pfree(at_end);
		at_end = NULL;
		goto again;
	}
	eb_progress_lsn = found;
	if (found_tli != 0)
		ereport(LOG,
				(errmsg("pg_eventbus relay: the last progress record in Kafka was written on timeline %u, which this server's history left at %X/%X: transactions committed here after that point are sent",
						found_tli, LSN_FORMAT_ARGS(found_left_at))));

out:
	if (history != NIL)
		list_free_deep(history);
	if (md != NULL)
		rd_kafka_metadata_destroy(md);
	rd_kafka_topic_destroy(rkt);
	if (at_end != NULL)
		pfree(at_end);
	rd_kafka_consumer_close(c);
	rd_kafka_destroy(c);
	return ok;
}

/*
 * Exactly-once, at the start of a session: registers the transactional id
 * with the brokers (which fences every older producer with that id and
 * aborts its open transaction), then reads how far Kafka got
 * (eb_progress_lsn): the session skips every PostgreSQL transaction whose
 * commit LSN is not above it.  Waits while the brokers do not answer.
 * False with *err set on an error, with *err empty at shutdown.
 */
bool
eb_kafka_transactions_start(char *err, size_t errlen)
{
	rd_kafka_error_t *error;

	err[0] = '\0';
	txn_open = false;
	eb_kafka_txn_seq = 0;
	eb_kafka_txn_committed = 0;
	last_pause_ms = 0;
	snprintf(session_tag, sizeof(session_tag), "%x-%llx",
			 (unsigned) MyProcPid, (unsigned long long) GetCurrentTimestamp());
	for (;;)
	{
		error = rd_kafka_init_transactions(eb_producer, 1000);
		if (error == NULL)
			break;
		if (!rd_kafka_error_is_retriable(error) &&
			rd_kafka_error_code(error) != RD_KAFKA_RESP_ERR__TIMED_OUT)
		{
			snprintf(err, errlen, "could not initialize Kafka transactions (transactional.id \"%s\"): %s",
					 txn_id, rd_kafka_error_string(error));
			rd_kafka_error_destroy(error);
			return false;
		}
		rd_kafka_error_destroy(error);
		rd_kafka_poll(eb_producer, 0);
		eb_relay_set_state(eb_brokers_down ? "broker unreachable" :
						   "starting Kafka transactions");
		CHECK_FOR_INTERRUPTS();
		/* a reload: start again with the new settings (the caller sees it) */
		if (eb_shutdown_requested || ConfigReloadPending)
			return false;
	}
	if (!eb_kafka_progress_read(err, errlen))
		return false;
	ereport(LOG,
			(errmsg("pg_eventbus relay: exactly-once with transactional.id \"%s\": Kafka has every transaction up to commit LSN %X/%X",
					txn_id, LSN_FORMAT_ARGS(eb_progress_lsn))));
	return true;
}
