#!/usr/bin/env python3
"""Writes cases.jsonl: the parser's own table of cases, in the corpus format of
nlu-corpus.md ({id, now, tz, say, expect}). The expected values are computed here, in Python,
from the conventions of nlu-corpus.md — independently of the Rust parser — so the table
checks the parser rather than echoing it.

    python3 crates/taskflow-nlu/tests/cases.py > crates/taskflow-nlu/tests/cases.jsonl
    python3 crates/taskflow-nlu/tests/cases.py held > crates/taskflow-nlu/tests/heldout.jsonl
"""
import datetime as dt, json, sys
from zoneinfo import ZoneInfo
from dateutil.rrule import rrulestr

CLOCKS = [  # (now, tz): a Sunday, a Friday before spring DST, a Wednesday evening, New Year's Eve, a Saturday before autumn DST
    ("2026-11-22T10:00:00", "America/New_York"),
    ("2026-03-06T15:30:00", "America/New_York"),
    ("2026-07-15T20:00:00", "Europe/Berlin"),
    ("2026-12-31T23:00:00", "Asia/Tokyo"),
    ("2026-10-24T08:00:00", "Europe/London"),
]
DAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
MONTHS = ["january", "february", "march", "april", "may", "june", "july", "august", "september", "october", "november", "december"]
cases = []

def at(now_s, tz, d, t):
    return dt.datetime.combine(d, t, tzinfo=ZoneInfo(tz)).isoformat()

def add(now_s, tz, say, **task):
    cases.append({"now": now_s, "tz": tz, "say": say, "expect": {"intent": "add_task", "task": task}})

def other(now_s, tz, say, expect):
    cases.append({"now": now_s, "tz": tz, "say": say, "expect": expect})

def next_weekday(today, i):
    ahead = (i - today.weekday()) % 7
    return today + dt.timedelta(days=ahead or 7)

def last_of_month(d):
    nxt = (d.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    return nxt - dt.timedelta(days=1)

def upcoming(today, m, d):
    x = dt.date(today.year, m, d)
    return x if x >= today else dt.date(today.year + 1, m, d)

TITLES = ["buy milk", "call the plumber", "send the invoice", "book a table", "renew car insurance",
          "water the garden", "pay the electricity bill", "email Sarah about the budget"]

for ci, (now_s, tz) in enumerate(CLOCKS):
    now = dt.datetime.fromisoformat(now_s)
    today = now.date()
    title = TITLES[ci]
    # Dates alone are all-day.
    add(now_s, tz, f"add {title} tomorrow", title=title, due_date=str(today + dt.timedelta(days=1)))
    add(now_s, tz, f"add {title} today", title=title, due_date=str(today))
    add(now_s, tz, f"add {title} the day after tomorrow", title=title, due_date=str(today + dt.timedelta(days=2)))
    for i, day in enumerate(DAYS):
        lead = ["", "on ", "next "][i % 3]
        add(now_s, tz, f"add {title} {lead}{day}", title=title, due_date=str(next_weekday(today, i)))
    for n in (2, 10):
        add(now_s, tz, f"add {title} in {n} days", title=title, due_date=str(today + dt.timedelta(days=n)))
    add(now_s, tz, f"add {title} in 2 weeks", title=title, due_date=str(today + dt.timedelta(weeks=2)))
    add(now_s, tz, f"add {title} next week", title=title, due_date=str(today - dt.timedelta(days=today.weekday()) + dt.timedelta(weeks=1)))
    sat = today if today.weekday() == 5 else next_weekday(today, 5)
    add(now_s, tz, f"add {title} this weekend", title=title, due_date=str(sat))
    add(now_s, tz, f"add {title} by the end of the month", title=title, due_date=str(last_of_month(today)))
    for m, d in ((1, 15), (6, 30), (12, 24)):
        exp = str(upcoming(today, m, d))
        add(now_s, tz, f"add {title} on {MONTHS[m-1][:3]} {d}", title=title, due_date=exp)
        add(now_s, tz, f"add {title} {d} {MONTHS[m-1]}", title=title, due_date=exp)
        add(now_s, tz, f"add {title} {m}/{d}", title=title, due_date=exp)
    add(now_s, tz, f"add {title} on 2027-02-14", title=title, due_date="2027-02-14")
    # Dates with times are instants in the user's zone.
    tomorrow = today + dt.timedelta(days=1)
    for phrase, t in (("at 5pm", dt.time(17)), ("at 9:30am", dt.time(9, 30)), ("at noon", dt.time(12)),
                      ("at 17:45", dt.time(17, 45)), ("morning", dt.time(9)), ("afternoon", dt.time(15)),
                      ("evening", dt.time(18)), ("at 7 pm", dt.time(19))):
        add(now_s, tz, f"add {title} tomorrow {phrase}", title=title, due_at=at(now_s, tz, tomorrow, t))
    fri = next_weekday(today, 4)
    add(now_s, tz, f"add {title} friday at 2pm", title=title, due_at=at(now_s, tz, fri, dt.time(14)))
    add(now_s, tz, f"add {title} dec 24 at 6pm", title=title, due_at=at(now_s, tz, upcoming(today, 12, 24), dt.time(18)))
    # A time alone: today if still ahead, else tomorrow.
    for h in (8, 21):
        t = dt.time(h)
        d = today if dt.datetime.combine(today, t) > now else tomorrow
        add(now_s, tz, f"add {title} at {h % 12 or 12}{'am' if h < 12 else 'pm'}", title=title, due_at=at(now_s, tz, d, t))
    add(now_s, tz, f"add {title} tonight", title=title, due_at=at(now_s, tz, today, dt.time(20)))
    # In N minutes / hours.
    for n, unit, delta in ((45, "minutes", dt.timedelta(minutes=45)), (2, "hours", dt.timedelta(hours=2))):
        local = (dt.datetime.combine(today, now.time(), tzinfo=ZoneInfo(tz)).astimezone(dt.timezone.utc) + delta).astimezone(ZoneInfo(tz))
        add(now_s, tz, f"add {title} in {n} {unit}", title=title, due_at=local.isoformat())
    # Priorities, tags, reminders.
    for said, p in (("p1", "urgent"), ("p2", "high"), ("p3", "medium"), ("p4", "low"), ("high priority", "high"),
                    ("low priority", "low"), ("urgent", "urgent"), ("important", "high"), ("medium priority", "medium")):
        add(now_s, tz, f"add {title} {said}", title=title, priority=p)
    add(now_s, tz, f"add {title} #home #errands", title=title, tags=["home", "errands"])
    add(now_s, tz, f"add {title} tagged work", title=title, tags=["work"])
    for said, mins in (("30 minutes", 30), ("an hour", 60), ("2 hours", 120), ("a day", 1440), ("15 min", 15)):
        add(now_s, tz, f"add {title} tomorrow at 10am remind me {said} before", title=title,
            due_at=at(now_s, tz, tomorrow, dt.time(10)), reminders_before_minutes=[mins])
    add(now_s, tz, f"remind me to {title} at 4pm", title=title,
        due_at=at(now_s, tz, today if now.time() < dt.time(16) else tomorrow, dt.time(16)), reminders_before_minutes=[0])
    # Recurrence: due at the first occurrence from now on (today counts if still ahead).
    for said, rule, t in (("every day", "FREQ=DAILY", None), ("daily", "FREQ=DAILY", None),
                          ("every weekday", "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR", None),
                          ("every workday at 8am", "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR", dt.time(8)),
                          ("every tuesday and friday", "FREQ=WEEKLY;BYDAY=TU,FR", None),
                          ("every saturday at 10am", "FREQ=WEEKLY;BYDAY=SA", dt.time(10)),
                          ("every 2 weeks", "FREQ=WEEKLY;INTERVAL=2", None),
                          ("every other week", "FREQ=WEEKLY;INTERVAL=2", None),
                          ("weekly", "FREQ=WEEKLY", None),
                          ("every month on the 15th", "FREQ=MONTHLY;BYMONTHDAY=15", None),
                          ("every 1st at 9am", "FREQ=MONTHLY;BYMONTHDAY=1", dt.time(9)),
                          ("every last friday", "FREQ=MONTHLY;BYDAY=-1FR", None),
                          ("every first monday", "FREQ=MONTHLY;BYDAY=1MO", None),
                          ("monthly", "FREQ=MONTHLY", None),
                          ("every year", "FREQ=YEARLY", None),
                          ("yearly", "FREQ=YEARLY", None),
                          ("every 3 days", "FREQ=DAILY;INTERVAL=3", None),
                          ("every day at 7:15am", "FREQ=DAILY", dt.time(7, 15))):
        start = dt.datetime.combine(today, t or dt.time(0))
        first = rrulestr(rule.replace(";INTERVAL=2", "").replace(";INTERVAL=3", ""), dtstart=start)
        threshold = now if t else dt.datetime.combine(today, dt.time(0)) - dt.timedelta(seconds=1)
        occ = first.after(threshold)
        due = {"due_at": at(now_s, tz, occ.date(), t)} if t else {"due_date": str(occ.date())}
        add(now_s, tz, f"add {title} {said}", title=title, recurrence=rule, **due)
    add(now_s, tz, f"add {title} every! 10 days", title=title, recurrence="FREQ=DAILY;INTERVAL=10",
        recurrence_anchor="completion", due_date=str(today))
    add(now_s, tz, f"add {title} 2 weeks after I finish it", title=title, recurrence="FREQ=WEEKLY;INTERVAL=2",
        recurrence_anchor="completion", due_date=str(today))
    # Lists.
    other(now_s, tz, "what's due tomorrow?", {"intent": "list_tasks", "filter": {"due": {"from": str(tomorrow), "to": str(tomorrow)}}})
    sun = today if today.weekday() == 6 else next_weekday(today, 6)
    other(now_s, tz, "show my tasks for this week", {"intent": "list_tasks", "filter": {"due": {"from": str(today), "to": str(sun)}}})
    mon = today - dt.timedelta(days=today.weekday()) + dt.timedelta(weeks=1)
    other(now_s, tz, "what do I have next week", {"intent": "list_tasks", "filter": {"due": {"from": str(mon), "to": str(mon + dt.timedelta(days=6))}}})

# Clock-independent cases, said at the first clock.
now_s, tz = CLOCKS[0]
for say, expect in [
    ("show urgent tasks", {"intent": "list_tasks", "filter": {"priority": "urgent"}}),
    ("list low priority tasks", {"intent": "list_tasks", "filter": {"priority": "low"}}),
    ("show completed tasks", {"intent": "list_tasks", "filter": {"status": "completed"}}),
    ("what did I finish", {"intent": "list_tasks", "filter": {"status": "completed"}}),
    ("list everything", {"intent": "list_tasks", "filter": {"status": "all"}}),
    ("show pending tasks", {"intent": "list_tasks", "filter": {}}),
    ("list my todos", {"intent": "list_tasks", "filter": {}}),
    ("what's overdue?", {"intent": "list_tasks", "filter": {"overdue": True}}),
    ("show tasks tagged errands", {"intent": "list_tasks", "filter": {"tags": ["errands"]}}),
    ("list #work tasks", {"intent": "list_tasks", "filter": {"tags": ["work"]}}),
    ("find tasks about taxes", {"intent": "list_tasks", "filter": {"query": "taxes"}}),
    ("search for dentist", {"intent": "list_tasks", "filter": {"query": "dentist"}}),
    ("show high priority tasks due today", {"intent": "list_tasks", "filter": {"priority": "high", "due": {"from": "2026-11-22", "to": "2026-11-22"}}}),
    ("complete task 8", {"intent": "complete_task", "target": {"number": 8}}),
    ("mark #2 done", {"intent": "complete_task", "target": {"number": 2}}),
    ("finish task #15", {"intent": "complete_task", "target": {"number": 15}}),
    ("I finished the report", {"intent": "complete_task", "target": {"query": "report"}}),
    ("mark buy milk as complete", {"intent": "complete_task", "target": {"query": "buy milk"}}),
    ("check off call mom", {"intent": "complete_task", "target": {"query": "call mom"}}),
    ("done", {"intent": "complete_task", "target": {"last": True}}),
    ("mark that as done", {"intent": "complete_task", "target": {"last": True}}),
    ("please complete task 3", {"intent": "complete_task", "target": {"number": 3}}),
    ("reopen #6", {"intent": "reopen_task", "target": {"number": 6}}),
    ("reopen it", {"intent": "reopen_task", "target": {"last": True}}),
    ("mark task 9 as not done", {"intent": "reopen_task", "target": {"number": 9}}),
    ("mark the report as incomplete", {"intent": "reopen_task", "target": {"query": "report"}}),
    ("delete #5", {"intent": "delete_task", "target": {"number": 5}}),
    ("remove task 11", {"intent": "delete_task", "target": {"number": 11}}),
    ("delete that", {"intent": "delete_task", "target": {"last": True}}),
    ("get rid of the gym task", {"intent": "delete_task", "target": {"query": "gym"}}),
    ("cancel the meeting with bob", {"intent": "delete_task", "target": {"query": "meeting with bob"}}),
    ("could you delete task 4 please", {"intent": "delete_task", "target": {"number": 4}}),
    ("rename #4 to buy oat milk", {"intent": "update_task", "target": {"number": 4}, "changes": {"title": "buy oat milk"}}),
    ("rename it to call dad", {"intent": "update_task", "target": {"last": True}, "changes": {"title": "call dad"}}),
    ("move #3 to tomorrow", {"intent": "update_task", "target": {"number": 3}, "changes": {"due_date": "2026-11-23"}}),
    ("reschedule task 2 to monday at 10am", {"intent": "update_task", "target": {"number": 2}, "changes": {"due_at": "2026-11-23T10:00:00-05:00"}}),
    ("postpone the dentist to dec 3", {"intent": "update_task", "target": {"query": "dentist"}, "changes": {"due_date": "2026-12-03"}}),
    ("make task 7 urgent", {"intent": "update_task", "target": {"number": 7}, "changes": {"priority": "urgent"}}),
    ("set the priority of task 1 to low", {"intent": "update_task", "target": {"number": 1}, "changes": {"priority": "low"}}),
    ("make it repeat every day", {"intent": "update_task", "target": {"last": True}, "changes": {"recurrence": "FREQ=DAILY"}}),
    ("make task 3 repeat every monday", {"intent": "update_task", "target": {"number": 3}, "changes": {"recurrence": "FREQ=WEEKLY;BYDAY=MO"}}),
    ("stop repeating it", {"intent": "update_task", "target": {"last": True}, "changes": {"recurrence": None}}),
    ("add tag #home to task 2", {"intent": "update_task", "target": {"number": 2}, "changes": {"add_tags": ["home"]}}),
    ("remove tag #work from task 2", {"intent": "update_task", "target": {"number": 2}, "changes": {"remove_tags": ["work"]}}),
    ("remind me about task 8 an hour before", {"intent": "update_task", "target": {"number": 8}, "changes": {"reminders_before_minutes": [60]}}),
    ("help", {"intent": "help"}),
    ("help me", {"intent": "help"}),
    ("how does this work?", {"intent": "help"}),
    ("what can I say", {"intent": "help"}),
    ("hello", {"intent": "unknown"}),
    ("what is the capital of France?", {"intent": "unknown"}),
    ("how are you", {"intent": "unknown"}),
    ("asdf qwerty", {"intent": "unknown"}),
    ("", {"intent": "unknown"}),
    ("   ", {"intent": "unknown"}),
    ("ADD BUY MILK TOMORROW", {"intent": "add_task", "task": {"title": "buy milk", "due_date": "2026-11-23"}}),
    ("please add call the vet tomorrow at 3pm, thanks!", {"intent": "add_task", "task": {"title": "call the vet", "due_at": "2026-11-23T15:00:00-05:00"}}),
    ("could you add pick up the dry cleaning on friday", {"intent": "add_task", "task": {"title": "pick up the dry cleaning", "due_date": "2026-11-27"}}),
    ('add "meet at 5pm with the team" tomorrow', {"intent": "add_task", "task": {"title": "meet at 5pm with the team", "due_date": "2026-11-23"}}),
    ('add "every day matters" poster', {"intent": "add_task", "task": {"title": "every day matters"}}),
    ("add read chapter 3", {"intent": "add_task", "task": {"title": "read chapter 3"}}),
    ("I need to renew my passport by dec 15 high priority", {"intent": "add_task", "task": {"title": "renew my passport", "due_date": "2026-12-15", "priority": "high"}}),
    ("don't forget to feed the cat tonight", {"intent": "add_task", "task": {"title": "feed the cat", "due_at": "2026-11-22T20:00:00-05:00"}}),
    ("create a task to clean the fridge this weekend #home", {"intent": "add_task", "task": {"title": "clean the fridge", "due_date": "2026-11-28", "tags": ["home"]}}),
    ("add pay rent every month on the 1st", {"intent": "add_task", "task": {"title": "pay rent", "recurrence": "FREQ=MONTHLY;BYMONTHDAY=1", "due_date": "2026-12-01"}}),
    ("add standup every weekday at 9am until dec 31", {"intent": "add_task", "task": {"title": "standup", "recurrence": "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR;UNTIL=20261231", "due_at": "2026-11-23T09:00:00-05:00"}}),
    ("add physio every monday and wednesday at 6pm for 3 weeks", {"intent": "add_task", "task": {"title": "physio", "recurrence": "FREQ=WEEKLY;BYDAY=MO,WE;COUNT=6", "due_at": "2026-11-23T18:00:00-05:00"}}),
    ("add water plants every other day", {"intent": "add_task", "task": {"title": "water plants", "recurrence": "FREQ=DAILY;INTERVAL=2", "due_date": "2026-11-22"}}),
    ("add review budget every 3 months", {"intent": "add_task", "task": {"title": "review budget", "recurrence": "FREQ=MONTHLY;INTERVAL=3", "due_date": "2026-11-22"}}),
    ("add take vitamins every morning", {"intent": "add_task", "task": {"title": "take vitamins", "recurrence": "FREQ=DAILY", "due_at": "2026-11-23T09:00:00-05:00"}}),
    ("add bins out every thursday evening", {"intent": "add_task", "task": {"title": "bins out", "recurrence": "FREQ=WEEKLY;BYDAY=TH", "due_at": "2026-11-26T18:00:00-05:00"}}),
    ("add haircut every! 6 weeks", {"intent": "add_task", "task": {"title": "haircut", "recurrence": "FREQ=WEEKLY;INTERVAL=6", "recurrence_anchor": "completion", "due_date": "2026-11-22"}}),
    ("add anniversary every year on jun 12", {"intent": "add_task", "task": {"title": "anniversary", "recurrence": "FREQ=YEARLY;BYMONTH=6;BYMONTHDAY=12", "due_date": "2027-06-12"}}),
    ("add quarterly taxes every 3 months on the 15th", {"intent": "add_task", "task": {"title": "quarterly taxes", "recurrence": "FREQ=MONTHLY;INTERVAL=3;BYMONTHDAY=15", "due_date": "2026-12-15"}}),
    ("add submit timesheet every friday at 4pm remind me 30 minutes before #work p2", {"intent": "add_task", "task": {"title": "submit timesheet", "recurrence": "FREQ=WEEKLY;BYDAY=FR", "due_at": "2026-11-27T16:00:00-05:00", "reminders_before_minutes": [30], "tags": ["work"], "priority": "high"}}),
    ("remind me to take out the trash every tuesday at 7pm", {"intent": "add_task", "task": {"title": "take out the trash", "recurrence": "FREQ=WEEKLY;BYDAY=TU", "due_at": "2026-11-24T19:00:00-05:00", "reminders_before_minutes": [0]}}),
    ("buy flowers tomorrow", {"intent": "add_task", "task": {"title": "buy flowers", "due_date": "2026-11-23"}}),
    ("call grandma on sunday at 11am", {"intent": "add_task", "task": {"title": "call grandma", "due_at": "2026-11-29T11:00:00-05:00"}}),
    ("add lunch with Ana at 12:30", {"intent": "add_task", "task": {"title": "lunch with Ana", "due_at": "2026-11-22T12:30:00-05:00"}}),
    ("add book club 12/3 at 7pm", {"intent": "add_task", "task": {"title": "book club", "due_at": "2026-12-03T19:00:00-05:00"}}),
    ("add dentist on december 2nd at 8:15am", {"intent": "add_task", "task": {"title": "dentist", "due_at": "2026-12-02T08:15:00-05:00"}}),
    ("add send report by friday 5pm urgent #work", {"intent": "add_task", "task": {"title": "send report", "due_at": "2026-11-27T17:00:00-05:00", "priority": "urgent", "tags": ["work"]}}),
    ("add Käse kaufen morgen #einkauf", {"intent": "add_task", "task": {"title": "Käse kaufen morgen", "tags": ["einkauf"]}}),
    ("add 牛乳を買う tomorrow", {"intent": "add_task", "task": {"title": "牛乳を買う", "due_date": "2026-11-23"}}),
]:
    other(now_s, tz, say, expect)

# DST: a time on the day clocks change keeps its wall-clock reading.
other("2026-03-07T12:00:00", "America/New_York", "add brunch tomorrow at 11am",
      {"intent": "add_task", "task": {"title": "brunch", "due_at": "2026-03-08T11:00:00-04:00"}})
other("2026-10-24T12:00:00", "Europe/Berlin", "add run tomorrow at 8am",
      {"intent": "add_task", "task": {"title": "run", "due_at": "2026-10-25T08:00:00+01:00"}})
other("2026-03-28T12:00:00", "Europe/Berlin", "add call home every day at 9am",
      {"intent": "add_task", "task": {"title": "call home", "recurrence": "FREQ=DAILY", "due_at": "2026-03-29T09:00:00+02:00"}})

# Tags and reminders on a task that exists.
for say, expect in [
    ("tag it work", {"intent": "update_task", "target": {"last": True}, "changes": {"add_tags": ["work"]}}),
    ("tag that as urgent-stuff", {"intent": "update_task", "target": {"last": True}, "changes": {"add_tags": ["urgent-stuff"]}}),
    ("tag #4 with travel", {"intent": "update_task", "target": {"number": 4}, "changes": {"add_tags": ["travel"]}}),
    ("tag task 7 errands", {"intent": "update_task", "target": {"number": 7}, "changes": {"add_tags": ["errands"]}}),
    ("tag #4 with travel and family", {"intent": "update_task", "target": {"number": 4}, "changes": {"add_tags": ["travel", "family"]}}),
    ("tag buy milk with groceries", {"intent": "update_task", "target": {"query": "buy milk"}, "changes": {"add_tags": ["groceries"]}}),
    ("untag #4 travel", {"intent": "update_task", "target": {"number": 4}, "changes": {"remove_tags": ["travel"]}}),
    ("add review the report tag it work", {"intent": "add_task", "task": {"title": "review the report", "tags": ["work"]}}),
    ("add plan the trip, tag it travel and family", {"intent": "add_task", "task": {"title": "plan the trip", "tags": ["travel", "family"]}}),
    ("set a reminder for #2 30 minutes before", {"intent": "update_task", "target": {"number": 2}, "changes": {"reminders_before_minutes": [30]}}),
    ("add a reminder to task 5 an hour before", {"intent": "update_task", "target": {"number": 5}, "changes": {"reminders_before_minutes": [60]}}),
    ("set a reminder for it a day before", {"intent": "update_task", "target": {"last": True}, "changes": {"reminders_before_minutes": [1440]}}),
    ("remind me about the passport a day before", {"intent": "update_task", "target": {"query": "passport"}, "changes": {"reminders_before_minutes": [1440]}}),
    ("remind me about task 3", {"intent": "update_task", "target": {"number": 3}, "changes": {"reminders_before_minutes": [0]}}),
    ("remind me about it tomorrow at 9am", {"intent": "update_task", "target": {"last": True}, "changes": {"due_at": "2026-11-23T09:00:00-05:00", "reminders_before_minutes": [0]}}),
    ("set a reminder for tomorrow at 9am to call mom", {"intent": "add_task", "task": {"title": "call mom", "due_at": "2026-11-23T09:00:00-05:00", "reminders_before_minutes": [0]}}),
    ("set a reminder for 9 am tomorrow to call mom", {"intent": "add_task", "task": {"title": "call mom", "due_at": "2026-11-23T09:00:00-05:00", "reminders_before_minutes": [0]}}),
    ("set a reminder for this evening to call mom", {"intent": "add_task", "task": {"title": "call mom", "due_at": "2026-11-22T18:00:00-05:00", "reminders_before_minutes": [0]}}),
    ("remind me of that at 5pm", {"intent": "update_task", "target": {"last": True}, "changes": {"due_at": "2026-11-22T17:00:00-05:00", "reminders_before_minutes": [0]}}),
    ("what's on saturday?", {"intent": "list_tasks", "filter": {"due": {"from": "2026-11-28", "to": "2026-11-28"}}}),
    ("what do I have on friday", {"intent": "list_tasks", "filter": {"due": {"from": "2026-11-27", "to": "2026-11-27"}}}),
    ("clear completed tasks", {"intent": "delete_task", "target": {"query": "completed tasks"}}),
    ("how many tasks do I have", {"intent": "list_tasks", "filter": {}}),
    ("how many tasks are due tomorrow?", {"intent": "list_tasks", "filter": {"due": {"from": "2026-11-23", "to": "2026-11-23"}}}),
    ("thanks!", {"intent": "unknown"}),
    ("hi there", {"intent": "unknown"}),
]:
    other(now_s, tz, say, expect)

# Families of how people really talk (questions, statements, quick-add marks, changes to a task
# that exists, lists as filters), each said at every clock and in the variants people type.
def typed(say, question=False):
    """The ways one request is typed: as is, capitalised and punctuated, polite, chatty."""
    end = "?" if question else "."
    out = [say, say[0].upper() + say[1:] + end]
    if question:
        out += ["hey, " + say, say.upper()]
    else:
        out += ["please " + say, say + ", thanks"]
    return out

def family(now_s, tz, say, expect, question=False):
    for v in typed(say, question):
        other(now_s, tz, v, expect)

def listed(**f):
    return {"intent": "list_tasks", "filter": f}

def day_range(a, b=None):
    return {"from": str(a), "to": str(b or a)}

PAST = [("I already paid the electricity bill", "electricity bill"), ("I called the plumber", "plumber"),
        ("I just booked a table", "table"), ("I've sent the invoice", "invoice"),
        ("I finally renewed the car insurance", "car insurance"), ("I watered the garden", "garden"),
        ("I bought the milk", "milk"), ("I have submitted the report", "report")]
IS_DONE = [("the report is finished", "report"), ("the invoice has been sent", "invoice"),
           ("the rent is paid", "rent"), ("my taxes are done", "taxes"),
           ("the laundry is all done", "laundry"), ("the car wash is complete", "car wash")]
TAGS = ["errands", "work", "home", "travel", "family"]

for ci, (now_s, tz) in enumerate(CLOCKS):
    now = dt.datetime.fromisoformat(now_s)
    today = now.date()
    tomorrow = today + dt.timedelta(days=1)
    sun = today if today.weekday() == 6 else next_weekday(today, 6)
    day_i = (ci * 2 + 1) % 7
    day, d = DAYS[day_i], next_weekday(today, day_i)
    tag = TAGS[ci]
    title = TITLES[ci]
    # Questions instead of commands: a list with the filter the question implies.
    for say, expect in [
        (f"is there anything I have to do on {day}", listed(due=day_range(d))),
        ("got anything overdue", listed(overdue=True)),
        ("anything due tomorrow", listed(due=day_range(tomorrow))),
        ("what's left for today", listed(due=day_range(today))),
        (f"do I have anything on {day}", listed(due=day_range(d))),
        ("is anything due this week", listed(due=day_range(today, sun))),
        ("what should I do next", listed()),
        ("what's on my plate", listed()),
        ("what's next", listed()),
        (f"anything tagged {tag} due this week", listed(tags=[tag], due=day_range(today, sun))),
        ("what's overdue at work", listed(overdue=True, tags=["work"])),
        ("anything overdue at home", listed(overdue=True, tags=["home"])),
    ]:
        family(now_s, tz, say, expect, question=True)
    # Statements of fact: done, or a new time.
    say, q = PAST[ci]
    family(now_s, tz, say, {"intent": "complete_task", "target": {"query": q}})
    say, q = PAST[ci + 3]
    family(now_s, tz, say, {"intent": "complete_task", "target": {"query": q}})
    say, q = IS_DONE[ci]
    family(now_s, tz, say, {"intent": "complete_task", "target": {"query": q}})
    family(now_s, tz, f"#{ci + 4} is done", {"intent": "complete_task", "target": {"number": ci + 4}})
    family(now_s, tz, f"the dentist moved to {day} at 3pm",
           {"intent": "update_task", "target": {"query": "dentist"}, "changes": {"due_at": at(now_s, tz, d, dt.time(15))}})
    family(now_s, tz, f"my haircut is postponed until {day}",
           {"intent": "update_task", "target": {"query": "haircut"}, "changes": {"due_date": str(d)}})
    family(now_s, tz, "the standup got moved to tomorrow at 10am",
           {"intent": "update_task", "target": {"query": "standup"}, "changes": {"due_at": at(now_s, tz, tomorrow, dt.time(10))}})
    # Reminders and changes about a task that exists, in any word order.
    for n, unit, mins in ((15, "minutes", 15), (1, "hour", 60), (2, "days", 2880)):
        said = f"{n} {unit}" if n != 1 else f"an {unit}"
        family(now_s, tz, f"remind me {said} before the standup",
               {"intent": "update_task", "target": {"query": "standup"}, "changes": {"reminders_before_minutes": [mins]}})
    family(now_s, tz, "make #5 repeat every other week",
           {"intent": "update_task", "target": {"number": 5}, "changes": {"recurrence": "FREQ=WEEKLY;INTERVAL=2"}})
    family(now_s, tz, "rename task 2 to 'renew passport'",
           {"intent": "update_task", "target": {"number": 2}, "changes": {"title": "renew passport"}})
    family(now_s, tz, "push the gym to tomorrow",
           {"intent": "update_task", "target": {"query": "gym"}, "changes": {"due_date": str(tomorrow)}})
    family(now_s, tz, f"push the gym to {day}",
           {"intent": "update_task", "target": {"query": "gym"}, "changes": {"due_date": str(d)}})
    for say in (f"untick #{ci + 7}", f"uncheck task {ci + 7}", f"mark {ci + 7} as not done"):
        family(now_s, tz, say, {"intent": "reopen_task", "target": {"number": ci + 7}})
    # Quick-add marks never stay in the title.
    for mark, p in (("!high", "high"), ("!urgent", "urgent"), ("!low", "low"), ("!!", "medium"),
                    ("!!!", "high"), ("!!!!", "urgent"), ("p1", "urgent"), ("p4", "low")):
        family(now_s, tz, f"{title} {mark}", {"intent": "add_task", "task": {"title": title, "priority": p}})
    family(now_s, tz, f"{title} *{tag}", {"intent": "add_task", "task": {"title": title, "tags": [tag]}})
    family(now_s, tz, f"{title} @{tag}", {"intent": "add_task", "task": {"title": title, "tags": [tag]}})
    family(now_s, tz, f"{title} @tomorrow", {"intent": "add_task", "task": {"title": title, "due_date": str(tomorrow)}})
    family(now_s, tz, f"{title} @{day} !high *{tag}",
           {"intent": "add_task", "task": {"title": title, "due_date": str(d), "priority": "high", "tags": [tag]}})
    family(now_s, tz, f"file taxes by april 15 !high",
           {"intent": "add_task", "task": {"title": "file taxes", "due_date": str(upcoming(today, 4, 15)), "priority": "high"}})
    # Lists as filters in words.
    for say, expect in [
        ("show urgent and high", listed(priority="urgent,high")),
        ("list high and low priority tasks", listed(priority="high,low")),
        ("show me urgent tasks due tomorrow", listed(priority="urgent", due=day_range(tomorrow))),
        ("the next 5 things due", listed(limit=5)),
        ("show the next 3 tasks", listed(limit=3)),
        (f"show {tag} tasks due this week", listed(tags=[tag], due=day_range(today, sun))),
    ]:
        family(now_s, tz, say, expect)
    # Several changes in one sentence, the task named once.
    family(now_s, tz, f"move #{ci + 2} to {day} and make it urgent",
           {"intent": "update_task", "target": {"number": ci + 2}, "changes": {"due_date": str(d), "priority": "urgent"}})
    family(now_s, tz, "move it to tomorrow at 3pm and make it low priority",
           {"intent": "update_task", "target": {"last": True}, "changes": {"due_at": at(now_s, tz, tomorrow, dt.time(15)), "priority": "low"}})
    # A list of things to a list: one task each, tagged with the list; without a comma, one task.
    ITEMS = [["eggs", "bread", "butter"], ["apples", "pears", "plums"], ["nails", "glue", "tape"],
             ["sunscreen", "towels", "a hat"], ["stamps", "envelopes", "a pen"]][ci]
    said = ", ".join(ITEMS[:-1]) + " and " + ITEMS[-1]
    for dest, t in ((tag, tag), (f"my {tag} list", tag)):
        task = {"title": ITEMS[0], "tags": [t]}
        exp = {"intent": "add_task", "task": task, "also": [{"title": i, "tags": [t]} for i in ITEMS[1:]]}
        family(now_s, tz, f"add {said} to {dest}", exp)
    family(now_s, tz, f"add take the {ITEMS[0]} and {ITEMS[1]} to {tag}",
           {"intent": "add_task", "task": {"title": f"take the {ITEMS[0]} and {ITEMS[1]} to {tag}"}})
    family(now_s, tz, f"add buy {ITEMS[0]} and {ITEMS[1]} tomorrow",
           {"intent": "add_task", "task": {"title": f"buy {ITEMS[0]} and {ITEMS[1]}", "due_date": str(tomorrow)}})
    # Slips of one letter in the command word: two neighbours swapped, one letter dropped
    # or doubled (the last two only in words of six letters or more).
    def slips(word):
        out = [word[:i] + word[i + 1] + word[i] + word[i + 2:] for i in (1, len(word) - 2)]
        if len(word) >= 6:
            out += [word[:3] + word[4:], word[:2] + word[2] + word[2:]]
        return [w for w in dict.fromkeys(out) if w != word]
    for verb, rest, expect in [
        ("show", "my tasks", listed()),
        ("delete", f"#{ci + 3}", {"intent": "delete_task", "target": {"number": ci + 3}}),
        ("complete", f"task {ci + 2}", {"intent": "complete_task", "target": {"number": ci + 2}}),
        ("reschedule", f"the dentist to {day}", {"intent": "update_task", "target": {"query": "dentist"}, "changes": {"due_date": str(d)}}),
        ("remove", f"task {ci + 5}", {"intent": "delete_task", "target": {"number": ci + 5}}),
    ]:
        for w in slips(verb):
            other(now_s, tz, f"{w} {rest}", expect)
    # What was finished when: a range of completion days, not of due days.
    monday = today - dt.timedelta(days=today.weekday())
    for said, a, b in (("yesterday", today - dt.timedelta(days=1), today - dt.timedelta(days=1)),
                       ("today", today, today), ("this week", monday, today),
                       ("last week", monday - dt.timedelta(days=7), monday - dt.timedelta(days=1))):
        family(now_s, tz, f"what did I finish {said}", listed(status="completed", completed=day_range(a, b)), question=True)
    family(now_s, tz, "show completed tasks due today", listed(status="completed", due=day_range(today)))
    # Several steps in one sentence: one task, with its reminder.
    family(now_s, tz, "add buy milk and eggs tomorrow and remind me at 8am",
           {"intent": "add_task", "task": {"title": "buy milk and eggs", "due_at": at(now_s, tz, tomorrow, dt.time(8)), "reminders_before_minutes": [0]}})

# Held back: phrasings of the same families that the parser was not tuned on. They are scored
# apart (heldout.jsonl, `corpus.rs` prints the rate) to tell how the reader does on sentences
# it never saw; a miss here is a family to read better, not a line to special-case.
own = cases
cases = []
now_s, tz = CLOCKS[0]
for say, expect in [
    ("anything on for thursday?", listed(due=day_range(dt.date(2026, 11, 26)))),
    ("have I got anything today", listed(due=day_range(dt.date(2026, 11, 22)))),
    ("are there any overdue tasks?", listed(overdue=True)),
    ("what's remaining this week", listed(due=day_range(dt.date(2026, 11, 22)))),
    ("is anything tagged work due tomorrow?", listed(tags=["work"], due=day_range(dt.date(2026, 11, 23)))),
    ("what am I missing?", listed()),
    ("what do I need to do tomorrow?", listed(due=day_range(dt.date(2026, 11, 23)))),
    ("anything urgent?", listed(priority="urgent")),
    ("I mailed the package", {"intent": "complete_task", "target": {"query": "package"}}),
    ("I've fed the cat", {"intent": "complete_task", "target": {"query": "cat"}}),
    ("the presentation is done", {"intent": "complete_task", "target": {"query": "presentation"}}),
    ("task 12 is finished", {"intent": "complete_task", "target": {"number": 12}}),
    ("the tax return has been submitted", {"intent": "complete_task", "target": {"query": "tax return"}}),
    ("the meeting with bob was moved to friday at 2pm", {"intent": "update_task", "target": {"query": "meeting with bob"}, "changes": {"due_at": "2026-11-27T14:00:00-05:00"}}),
    ("yoga is postponed to monday", {"intent": "update_task", "target": {"query": "yoga"}, "changes": {"due_date": "2026-11-23"}}),
    ("remind me 10 minutes before the call with Ana", {"intent": "update_task", "target": {"query": "call with ana"}, "changes": {"reminders_before_minutes": [10]}}),
    ("remind me a day before the flight", {"intent": "update_task", "target": {"query": "flight"}, "changes": {"reminders_before_minutes": [1440]}}),
    ("make task 4 repeat every month", {"intent": "update_task", "target": {"number": 4}, "changes": {"recurrence": "FREQ=MONTHLY"}}),
    ("push the dentist to next week", {"intent": "update_task", "target": {"query": "dentist"}, "changes": {"due_date": "2026-11-23"}}),
    ("uncheck #3", {"intent": "reopen_task", "target": {"number": 3}}),
    ("mark 9 not done", {"intent": "reopen_task", "target": {"number": 9}}),
    ("water plants !low", {"intent": "add_task", "task": {"title": "water plants", "priority": "low"}}),
    ("call the bank !!! @monday", {"intent": "add_task", "task": {"title": "call the bank", "priority": "high", "due_date": "2026-11-23"}}),
    ("order pizza *food p3", {"intent": "add_task", "task": {"title": "order pizza", "tags": ["food"], "priority": "medium"}}),
    ("renew passport @work !urgent", {"intent": "add_task", "task": {"title": "renew passport", "tags": ["work"], "priority": "urgent"}}),
    ("show urgent or high priority tasks", listed(priority="urgent,high")),
    ("list medium and low", listed(priority="medium,low")),
    ("show my next 10 tasks", listed(limit=10)),
    ("what's overdue for school?", listed(overdue=True, tags=["school"])),
    ("list errands tasks", listed(tags=["errands"])),
    ("add pay rent on friday and remind me at 9am", {"intent": "add_task", "task": {"title": "pay rent", "due_at": "2026-11-27T09:00:00-05:00", "reminders_before_minutes": [0]}}),
    ("what can you do for me?", {"intent": "help"}),
]:
    other(now_s, tz, say, expect)
held = cases

out = sys.argv[1] if len(sys.argv) > 1 else "own"
for prefix, table in (("own", own), ("held", held)):
    if prefix != out:
        continue
    for i, c in enumerate(table, 1):
        c["id"] = f"{prefix}-{i:03d}"
        print(json.dumps({"id": c["id"], "now": c["now"], "tz": c["tz"], "say": c["say"], "expect": c["expect"]}, ensure_ascii=False))
