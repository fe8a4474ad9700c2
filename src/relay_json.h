/*-------------------------------------------------------------------------
 *
 * relay_json.h
 *	  The JSON text of an event's value as the relay sends it
 *	  (relay_json.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef EB_RELAY_JSON_H
#define EB_RELAY_JSON_H

#include "lib/stringinfo.h"
#include "utils/jsonb.h"

extern void eb_json_append(StringInfo out, Jsonb *jb);
extern uint64 eb_json_length(Jsonb *jb);
extern uint64 eb_json_length_bound(Jsonb *jb);

#endif							/* EB_RELAY_JSON_H */
