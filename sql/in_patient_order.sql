-- A rule's result in the order of the patients table (`patient_order` is registered
-- beside the tables with each patient's position), so that the results of all
-- criteria line up row by row and are placed side by side rather than joined
-- (pipeline/engines/__init__.py checks the ids match before it does so).
-- The placeholder below is replaced by the text of one file of sql/rules/, never by a value.
select r.*
from (
{rule}
) as r
inner join patient_order as o on o.patient_id = r.patient_id
order by o.pos
