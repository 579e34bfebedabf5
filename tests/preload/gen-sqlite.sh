#!/bin/sh
# gen-sqlite.sh: write to stdout an SQL batch for sqlite3: a few thousand
# INSERTs in transactions, indexes, joins, aggregates, an UPDATE and a
# DELETE, a VACUUM. tests/preload/run-programs runs it with and without
# the shim and compares the output.
exec awk 'BEGIN {
    print "CREATE TABLE author(id INTEGER PRIMARY KEY, name TEXT, country TEXT);"
    print "CREATE TABLE book(id INTEGER PRIMARY KEY, author INTEGER, title TEXT, year INTEGER, pages INTEGER);"
    print "CREATE TABLE review(book INTEGER, stars INTEGER, body TEXT);"
    print "BEGIN;"
    for (i = 1; i <= 300; i++)
        printf "INSERT INTO author VALUES(%d, \x27author %d\x27, \x27country %d\x27);\n", i, i, i % 17
    for (i = 1; i <= 3000; i++) {
        pad = ""
        for (k = 0; k < i % 40; k++) pad = pad "z"
        printf "INSERT INTO book VALUES(%d, %d, \x27title %d %s\x27, %d, %d);\n", i, i * 7 % 300 + 1, i, pad, 1900 + i % 120, 50 + i * 13 % 900
    }
    print "COMMIT;"
    print "BEGIN;"
    print "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 20000)"
    print "  INSERT INTO review SELECT x % 3000 + 1, x % 5 + 1, printf(\x27review %d %.*c\x27, x, x % 200, \x27r\x27) FROM n;"
    print "COMMIT;"
    print "CREATE INDEX book_author ON book(author);"
    print "CREATE INDEX review_book ON review(book);"
    print "SELECT count(*), sum(pages), avg(year) FROM book;"
    print "SELECT a.country, count(DISTINCT b.id), sum(r.stars), round(avg(r.stars), 4)"
    print "  FROM author a JOIN book b ON b.author = a.id JOIN review r ON r.book = b.id"
    print "  GROUP BY a.country ORDER BY a.country;"
    print "SELECT a.name, group_concat(b.id, \x27,\x27) FROM author a JOIN book b ON b.author = a.id"
    print "  WHERE a.id % 50 = 0 GROUP BY a.id ORDER BY a.id;"
    print "SELECT b.title, length(group_concat(r.body)) FROM book b JOIN review r ON r.book = b.id"
    print "  GROUP BY b.id ORDER BY sum(r.stars) DESC, b.id LIMIT 20;"
    print "UPDATE book SET pages = pages * 2 WHERE year % 3 = 0;"
    print "DELETE FROM review WHERE stars = 1;"
    print "SELECT count(*), sum(length(body)) FROM review;"
    print "SELECT year, count(*), max(pages) FROM book GROUP BY year HAVING count(*) > 20 ORDER BY year LIMIT 30;"
    print "VACUUM;"
    print "PRAGMA integrity_check;"
}'
