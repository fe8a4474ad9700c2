/*-------------------------------------------------------------------------
 *
 * relay_int.h
 *	  What the relay worker's modules share, and nothing else includes.
 *	  From the ground up, each calling only those below it:
 *	  relay_state.c (the status in shared memory, the session's state, the
 *	  error log), relay_kafka.c (the Kafka client: producer configuration,
 *	  metadata, partition mappings, producing, Kafka transactions and the
 *	  progress topic), relay_ack.c (sending a transaction's messages and
 *	  tracking them until acknowledged, delivery reports, refused messages,
 *	  confirming the slot, counters), relay_backfill.c (sending retained
 *	  events from the topic tables) and relay_worker.c (the process, the
 *	  session and its decoding loop).
 *
 * The output plugin (relay_output.c) does not include this: it hands its
 * messages to the worker through the EbRelayWriter in relay.h.
 *
 *-------------------------------------------------------------------------
 */
#ifndef EB_RELAY_INT_H
#define EB_RELAY_INT_H

#include <signal.h>

#include <librdkafka/rdkafka.h>

#include "lib/ilist.h"
#include "replication/logical.h"

#include "relay.h"
#include "shmem.h"

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
/* rate-limiting key of the errors that mean "the brokers cannot be reached" */
#define EB_LOG_KEY_BROKERS "\001brokers"

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
	XLogRecPtr	commit_lsn;
	bool		skip;			/* exactly-once: Kafka has it already */
	bool		uncounted;		/* ... but its messages were never counted
								 * (eb_ack_counted) */
	uint64		kafka_txn;		/* exactly-once: the Kafka transaction of its
								 * messages (eb_kafka_txn_seq), 0: none */
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
	struct EbKafkaTopic *ktopic;	/* counts it in flight (relay_topics.c) */
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
	rd_kafka_resp_err_t code;	/* what Kafka said */
	char		error[256];		/* ... in words */
} EbRelayRefusal;

/* ---------- relay_state.c: status, session state, errors ---------- */

extern EbRelayShared *eb_my_relay;	/* this database's relay status */
extern MemoryContext eb_session_cxt;	/* reset at each session's start and end */
extern bool eb_session_failed;	/* nothing more is confirmed in this session */
extern volatile sig_atomic_t eb_shutdown_requested;
extern bool eb_session_active;	/* decoding in a session */
extern bool eb_decoding;		/* inside LogicalDecodingProcessRecord() */

extern void eb_relay_set_state(const char *state);
extern bool eb_relay_log_due(const char *key, TimestampTz now);
extern void eb_relay_error_keyed(const char *msg, const char *key);
extern void eb_relay_error(const char *msg);

/* ---------- relay_kafka.c: the Kafka client ---------- */

typedef void (*EbKafkaDeliveryFn) (rd_kafka_t *rk, const rd_kafka_message_t *msg,
								   void *opaque);

/* eb_kafka_txn_commit_try's outcomes */
typedef enum EbKafkaCommit
{
	EB_KAFKA_COMMITTED,
	EB_KAFKA_COMMIT_RETRY,
	EB_KAFKA_COMMIT_FAILED,
} EbKafkaCommit;

extern rd_kafka_t *eb_producer;		/* for one session */
extern bool eb_brokers_down;	/* librdkafka: all broker connections down */
extern char eb_broker_error[EB_RELAY_ERROR_LEN];	/* names the broker */

extern bool eb_kafka_error_is_permanent(rd_kafka_resp_err_t err);
extern rd_kafka_t *eb_producer_create(EbKafkaDeliveryFn on_delivery, char *err, size_t errlen);
extern void eb_producer_destroy(void);
extern int	eb_kafka_event_fd(void);
extern void eb_drain_event_fd(void);
extern void eb_kafka_session_reset(void);
extern rd_kafka_resp_err_t eb_kafka_produce(EbRelayMessage *m, int32 partition, void *opaque);
extern void eb_relay_probe_brokers(bool in_flight);
extern bool eb_relay_config_changed(const char *brokers, const char *properties,
									const char *file);

/* exactly-once (eventbus.relay_delivery) */
extern bool eb_exactly_once;	/* this session's mode */
extern XLogRecPtr eb_progress_lsn;	/* Kafka has every transaction up to here */
extern char *eb_progress_record;	/* ... said by this progress record, or NULL */
extern uint64 eb_kafka_txn_seq; /* the open or last Kafka transaction */
extern uint64 eb_kafka_txn_committed;	/* the last one committed */

extern void eb_relay_txn_id(char *buf, size_t len);
extern bool eb_kafka_transactions_start(char *err, size_t errlen);
extern const char *eb_kafka_progress_topic(void);
extern bool eb_kafka_txn_open(void);
extern const char *eb_kafka_txn_name(void);
extern bool eb_kafka_txn_due(void);
extern void eb_kafka_txn_caught_up(void);
extern bool eb_kafka_txn_begin(void);
extern bool eb_kafka_txn_progress(XLogRecPtr commit_lsn, XLogRecPtr end_lsn, const char *note);
extern EbKafkaCommit eb_kafka_txn_commit_try(XLogRecPtr commit_lsn, TimestampTz deadline);
extern void eb_kafka_txn_abort(void);
extern void eb_kafka_txn_note_offset(const char *topic, int32 partition, int64 offset);

/* ---------- relay_topics.c: Kafka topic metadata, partition mappings ---------- */

extern void eb_kafka_topics_session_reset(void);
extern void eb_kafka_topics_release(void);
extern void eb_kafka_topics_prepare(long warm_up_ms);
extern bool eb_kafka_topics_ready(bool ask);
extern void eb_kafka_topics_refresh(bool changed_only);
extern bool eb_kafka_topic_refusal(const char *kafka_topic, rd_kafka_resp_err_t *err);
extern struct EbKafkaTopic *eb_kafka_topic_sending(const char *kafka_topic);
extern void eb_kafka_topic_answered(struct EbKafkaTopic *e);
extern void eb_mappings_load(void);
extern void eb_mappings_persist(void);
extern bool eb_relay_partition(EbRelayMessage *msg, int32 *partition,
							   rd_kafka_resp_err_t *refused);

/* ---------- relay_ack.c: acknowledgements and confirming ---------- */

extern EbRelayTxn *eb_current_txn;	/* between begin and commit callbacks */
extern int64 eb_in_flight;		/* messages not yet acknowledged */
extern TimestampTz eb_in_flight_since;	/* when eb_in_flight last rose from 0 */
extern bool eb_stopped_at_refusal;	/* the session ended at a 'stop' refusal */
extern bool eb_stopped_for_metadata;	/* ... at a Kafka topic not described */
extern uint64 eb_stat_events;
extern uint64 eb_stat_bytes;
extern XLogRecPtr eb_last_commit_lsn;	/* of the last transaction decoded */
extern XLogRecPtr eb_last_end_lsn;

extern void eb_ack_session_start(XLogRecPtr confirmed_flush);
extern void eb_ack_session_end(void);
extern void eb_relay_txn_begin(XLogRecPtr commit_lsn);
extern void eb_relay_send(EbRelayMessage *m);
extern bool eb_ack_kafka_commit(XLogRecPtr commit_lsn, XLogRecPtr end_lsn, const char *note,
								long wait_ms);
extern void eb_ack_kafka_abort(void);
extern void eb_relay_txn_commit(XLogRecPtr end_lsn, TimestampTz commit_time);
extern void eb_relay_refused(EbRelayTxn *t, EbRelayMsgRef *ref, const char *kafka_topic,
							 rd_kafka_resp_err_t err, bool sent);
extern void eb_delivery_cb(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque);
extern void eb_relay_poll(int timeout_ms);
extern void eb_relay_confirm(LogicalDecodingContext *ctx, bool caught_up, bool force_save);
extern bool eb_relay_slot_dirty(void);
extern void eb_relay_apply_policies(void);
extern void eb_relay_publish_stats(bool force);
extern void eb_ack_count_recovered(const char *relay_txn, EbPartShared *part,
								   int64 uid, int32 partition,
								   int64 last_position, int64 events,
								   int64 bytes);

#endif							/* EB_RELAY_INT_H */
