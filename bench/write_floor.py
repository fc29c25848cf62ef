"""The floor under the runner's CPU: its rows written with no logic at all.

Shared by bench/charge_throughput.  For each due subscription it writes the
rows a charge of the runner writes (the period invoice, its plan line, the
order in flight and its attempt; then the attempt and the order done, the
invoice paid, the subscription advanced and a payment_succeeded event), with
plain set-based SQL, batch by batch, the first half of a batch committed
before the second as the runner commits its claim before its outcomes.  No
HTTP, no verification, no pricing, consent, dunning or settlement logic:
what is left is what the tables, their indexes, constraints and triggers
cost per charge, which nothing in the runner's code can go below.

The rows it writes are counted (rows_written) so that the caller can check
they match the runner's own rows per charge: when the runner's model changes,
this file must follow it, and the check says when it has not.
"""
import json
import time

from cluster_cpu import ClusterCpu
from rows_written import rows_written

# a Toss Payment of a billing charge, of the size Toss answers with
RESPONSE = json.dumps({
    "mId": "tosspayments", "version": "2022-11-16", "paymentKey": "P" * 40, "orderId": "O" * 30,
    "orderName": "bench", "currency": "KRW", "method": "카드", "totalAmount": 9900,
    "balanceAmount": 9900, "suppliedAmount": 9000, "vat": 900, "status": "DONE",
    "requestedAt": "2026-12-02T10:00:00+09:00", "approvedAt": "2026-12-02T10:00:01+09:00",
    "useEscrow": False, "cultureExpense": False, "type": "BILLING", "country": "KR",
    "card": {"issuerCode": "61", "acquirerCode": "31", "number": "43301234****123*",
             "installmentPlanMonths": 0, "isInterestFree": False, "approveNo": "00000000",
             "useCardPoint": False, "cardType": "신용", "ownerType": "개인",
             "acquireStatus": "READY", "amount": 9900},
    "receipt": {"url": "https://dashboard.tosspayments.com/receipt/" + "r" * 60},
    "easyPay": None, "failure": None, "taxFreeAmount": 0})

CLAIM = """
BEGIN;
WITH s AS (SELECT * FROM toss_billing.subscriptions
            WHERE id BETWEEN {lo} AND {hi} AND period_number = 0 FOR UPDATE),
inv AS (INSERT INTO toss_billing.invoices (customer_id, subscription_id, kind, period_number, status,
                                           description, period_start, period_end, plan_id, unit_amount,
                                           quantity, subtotal, total, amount_due, recurring_amount,
                                           consent, finalized_at)
        SELECT customer_id, id, 'period', 0, 'open', 'bench', current_period_start, current_period_end,
               plan_id, 9900, 1, 9900, 9900, 9900, 9900, 'not_needed', now() FROM s
        RETURNING id, customer_id, subscription_id, period_start, period_end),
line AS (INSERT INTO toss_billing.invoice_items (invoice_id, customer_id, subscription_id, kind, description,
                                                 period_start, period_end, unit_amount, amount)
         SELECT id, customer_id, subscription_id, 'plan', 'bench', period_start, period_end, 9900, 9900
           FROM inv),
ord AS (INSERT INTO toss_billing.payments (order_id, customer_id, billing_key_id, merchant, state, order_name,
                                           amount, requested_by, subscription_id, period_number, obligation,
                                           invoice_id)
        SELECT 'floor' || md5(inv.id::text), inv.customer_id,
               (SELECT k.id FROM toss_billing.billing_keys k WHERE k.customer_id = inv.customer_id LIMIT 1),
               'default', 'in_flight', 'bench', 9900, current_user, inv.subscription_id, 0,
               'floor:' || inv.id, inv.id
          FROM inv
        RETURNING id, customer_id, order_id, billing_key_id)
INSERT INTO toss_billing.attempts (payment_id, customer_id, attempt_number, order_id, billing_key_id,
                                   idempotency_key, state, deadline, requested_by)
SELECT id, customer_id, 1, order_id, billing_key_id, md5(order_id), 'in_flight',
       now() + interval '1 minute', current_user
  FROM ord;
COMMIT;
"""

RECORD = """
BEGIN;
WITH att AS (UPDATE toss_billing.attempts a
                SET state = 'done', http_status = 200, response = convert_to($r${resp}$r$, 'UTF8'),
                    updated_at = now()
              WHERE a.state = 'in_flight'
                AND a.payment_id IN (SELECT p.id FROM toss_billing.payments p
                                      WHERE p.subscription_id BETWEEN {lo} AND {hi}
                                        AND p.state = 'in_flight')
             RETURNING a.payment_id),
ord AS (UPDATE toss_billing.payments p
           SET state = 'done', toss_status = 'DONE', payment_key = md5(p.order_id), total_amount = 9900,
               balance_amount = 9900, supplied_amount = 9000, vat = 900, approved_at = now(),
               requested_at = now(), http_status = 200, response = $r${resp}$r$::jsonb, updated_at = now()
          FROM att WHERE p.id = att.payment_id
        RETURNING p.id, p.invoice_id, p.subscription_id, p.customer_id),
inv AS (UPDATE toss_billing.invoices i
           SET status = 'paid', amount_paid = 9900, paid_at = now(), updated_at = now()
          FROM ord WHERE i.id = ord.invoice_id),
sub AS (UPDATE toss_billing.subscriptions s
           SET period_number = s.period_number + 1, current_period_start = s.current_period_end,
               current_period_end = s.current_period_end + interval '1 month',
               next_charge_at = s.current_period_end, status = 'active', updated_at = now()
          FROM ord WHERE s.id = ord.subscription_id)
INSERT INTO toss_billing.events (occurred_at, subscription_id, customer_id, payment_id, type,
                                 from_status, to_status, detail)
SELECT now(), subscription_id, customer_id, id, 'payment_succeeded', 'active', 'active',
       jsonb_build_object('amount', 9900)
  FROM ord;
COMMIT;
"""


def floor_case(b, n, batch):
    """Writes n charges' rows in batches of `batch`; returns CPU and rows per charge.

    b is a charge_throughput Bench (due_subscriptions, psql, script, cpu)."""
    lo, hi = b.due_subscriptions(n, "floor")
    b.psql("ANALYZE")
    ids = [int(x) for x in b.psql(
        f"SELECT id FROM toss_billing.subscriptions WHERE id BETWEEN {lo} AND {hi} ORDER BY id").split()]
    parts = ["\\set ON_ERROR_STOP 1"]
    for k in range(0, len(ids), batch):
        blo, bhi = ids[k], ids[min(k + batch, len(ids)) - 1]
        parts.append(CLAIM.format(lo=blo, hi=bhi))
        parts.append(RECORD.format(lo=blo, hi=bhi, resp=RESPONSE))
    rows0 = rows_written(b.psql)
    cpu0 = b.cpu.snapshot()
    b.script("\n".join(parts))
    time.sleep(0.3)             # the session's backend exits and is reaped
    cpu_ms = ClusterCpu.delta_ms(cpu0, b.cpu.snapshot())
    rows = rows_written(b.psql) - rows0
    done = int(b.psql(f"SELECT count(*) FROM toss_billing.payments "
                      f"WHERE subscription_id BETWEEN {lo} AND {hi} AND state = 'done'"))
    return {"done": done, "cpu_ms_per_charge": cpu_ms / max(done, 1), "rows_per_charge": rows / max(done, 1)}
