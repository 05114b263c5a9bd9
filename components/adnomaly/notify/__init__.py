"""Notifications for people: each anomaly goes to Prometheus Alertmanager, which routes, groups, silences
and delivers it (e-mail, chat, paging, webhooks). We only say what is firing and when it resolved."""
