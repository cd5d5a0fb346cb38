-- Every pending send written pays for each index on pending_sends; a schedule fan-out writes
-- hundreds of thousands at once. pending_by_subscriber (subscriber_id, automation_id, partial)
-- served only the "active sends of a subscriber" query, which sends_by_subscriber
-- (subscriber_id) serves as well: a subscriber has few sends, so filtering them by status and
-- automation after the index lookup costs nothing. The others stay: the id (primary key:
-- lookups, the insert's conflict check), pending_due (the sender's due query),
-- pending_by_automation (an automation's sends by status and due time, ending its sends) and
-- sends_by_subscriber (a subscriber's sends: the API, erasure, ending its sends).
DROP INDEX IF EXISTS pending_by_subscriber;
