/*-------------------------------------------------------------------------
 *
 * worker.h
 *	  Background workers: a launcher and the worker of eventbus.database.
 *
 *-------------------------------------------------------------------------
 */
#ifndef EB_WORKER_H
#define EB_WORKER_H

extern void eb_worker_register(void);

#endif							/* EB_WORKER_H */
