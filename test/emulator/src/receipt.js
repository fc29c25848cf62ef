// Owns the sales-slip (receipt) page that Payment.receipt.url points at:
// GET /sales-slip?paymentKey=… renders a small HTML receipt of a payment.
'use strict';

const { html, escapeHtml } = require('./http');

function show(store, query) {
  const rec = query.paymentKey ? store.payment(query.paymentKey) : null;
  if (!rec) return html(404, '<!doctype html><html lang="ko"><head><meta charset="utf-8"><title>영수증</title></head><body><p>존재하지 않는 결제 정보 입니다.</p></body></html>');
  const p = rec.payment;
  const rows = [
    ['가맹점', p.mId], ['주문번호', p.orderId], ['주문명', p.orderName], ['결제 상태', p.status],
    ['카드', `${p.card.number} (${p.card.cardType})`], ['승인번호', p.card.approveNo || '-'],
    ['결제 금액', `${p.totalAmount.toLocaleString('ko-KR')}원`], ['공급가액', p.suppliedAmount], ['부가세', p.vat],
    ['면세', p.taxFreeAmount], ['승인 시각', p.approvedAt || '-'],
  ].map(([k, v]) => `<tr><th>${escapeHtml(k)}</th><td>${escapeHtml(v)}</td></tr>`).join('');
  return html(200, `<!doctype html><html lang="ko"><head><meta charset="utf-8"><title>카드 매출전표</title></head><body><h1>카드 매출전표</h1><table>${rows}</table></body></html>`);
}

module.exports = { show };
