package oms

// ListOrdersSQL is listOrders' page query, for plan tests.
var ListOrdersSQL = listOrdersSQL
