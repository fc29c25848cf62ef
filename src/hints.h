/*
 * hints.h — hints added to errors PostgreSQL raises about toss_billing.
 */
#ifndef TOSS_HINTS_H
#define TOSS_HINTS_H

extern void toss_install_hints(void);

#endif
