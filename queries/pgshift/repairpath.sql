-- name: LogVerifyDifferences :execrows
-- Enters rows verify found different in the repair log of the side they are
-- copied from, as authoritative entries (copy from here to the other side),
-- so that the repair worker's path repairs them: under the rows' locks, from
-- the current row. keys holds each row's primary key as a JSON array of
-- strings.
INSERT INTO pgshift.repair_log (table_schema, table_name, key, op)
SELECT @table_schema::text, @table_name::text, ARRAY(SELECT json_array_elements_text(k.key_json::json)), 'verify'
FROM unnest(@keys::text[]) WITH ORDINALITY AS k (key_json, n)
ORDER BY k.n;
