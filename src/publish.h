/*-------------------------------------------------------------------------
 *
 * publish.h
 *	  Publishing from other modules.
 *
 *-------------------------------------------------------------------------
 */
#ifndef EB_PUBLISH_H
#define EB_PUBLISH_H

#include "utils/jsonb.h"

#include "catalog.h"

extern bool eb_xact_published;

/*
 * Bytes the relay's own headers add to a Kafka message (names and values):
 * eventbus-event-id (a UUID) and eventbus-lsn (at most 17 characters) on
 * every message; events also carry eventbus-topic (plus the name),
 * -partition and -position.
 */
#define EB_HEADER_EVENT_ID_SIZE (17 + 36)
#define EB_HEADER_LSN_SIZE (12 + 17)
#define EB_OUTBOX_HEADERS_SIZE (EB_HEADER_EVENT_ID_SIZE + EB_HEADER_LSN_SIZE)
#define EB_RELAY_HEADERS_SIZE \
	(EB_HEADER_EVENT_ID_SIZE + 14 + (18 + 10) + (17 + 19) + EB_HEADER_LSN_SIZE)

extern void eb_check_headers(Jsonb *headers);
extern void eb_check_size(Datum value, text *key, Jsonb *headers);
extern bool eb_check_event_size(EbTopic *topic, Datum value, text *key, Jsonb *headers);
extern bool eb_check_relayed_size(EbTopic *topic, Datum value, text *key, Jsonb *headers,
								  bool latest);
extern Size eb_headers_sent_size(Jsonb *headers, Size *type_len, Size *version_len);
extern void eb_publish_internal(EbTopic *topic, Datum value, text *key, Jsonb *headers,
								bool size_by_mapping, int32 *partition, int64 *position);

#endif							/* EB_PUBLISH_H */
