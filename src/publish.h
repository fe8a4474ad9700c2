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

extern void eb_check_headers(Jsonb *headers);
extern void eb_check_size(Datum value, text *key, Jsonb *headers);
extern void eb_check_event_size(EbTopic *topic, Datum value, text *key, Jsonb *headers);
extern void eb_check_relayed_size(EbTopic *topic, Datum value, text *key, Jsonb *headers);
extern Size eb_headers_sent_size(Jsonb *headers, Size *type_len, Size *version_len);
extern void eb_publish_internal(EbTopic *topic, Datum value, text *key, Jsonb *headers,
								int32 *partition, int64 *position);

#endif							/* EB_PUBLISH_H */
